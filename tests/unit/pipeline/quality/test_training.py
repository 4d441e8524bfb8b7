"""Training a match model without labels: u by random sampling, m by EM."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.synthetic.generator import generate, map_touches, write_jsonl
from pipeline.cli import main
from pipeline.engine.comparisons import Model
from pipeline.engine.features import Features
from pipeline.engine.identifiers import Normaliser
from pipeline.engine.weights import default_model
from pipeline.exceptions import ConfigurationError
from pipeline.quality.appraisal import MAX_CHANGE, appraise
from pipeline.quality.training import TrainingReport, records_of, train

ANCHOR = datetime(2026, 11, 24, tzinfo=UTC)


@pytest.fixture(scope="module")
def trained() -> Model:
    events = map_touches(generate(600, seed=8, anchor=ANCHOR)).events
    return train(records_of(events, Normaliser()), default_model(), random_pairs=30_000).model


def level(model: Model, comparison: str, label: str) -> tuple[float, float]:
    found = next(c for c in model.comparisons if c.output_column_name == comparison)
    lvl = next(x for x in found.levels if x.label == label)
    return lvl.m_probability, lvl.u_probability


def test_agreement_is_learned_to_mean_a_match(trained: Model) -> None:
    for comparison in ("first_name", "last_name", "birth_date"):
        m_exact, u_exact = level(trained, comparison, "exact")
        m_else, u_else = level(trained, comparison, "else")
        assert m_exact > 0.5 > m_else, comparison
        assert u_exact < 0.05 < 0.9 < u_else, comparison


def test_probabilities_of_each_comparison_sum_to_one(trained: Model) -> None:
    for comparison in trained.comparisons:
        assert sum(x.m_probability for x in comparison.levels) == pytest.approx(1, abs=1e-3)
        assert sum(x.u_probability for x in comparison.levels) == pytest.approx(1, abs=1e-3)
    assert 0 < trained.probability_two_random_records_match < 0.01


def test_training_needs_records() -> None:
    with pytest.raises(ConfigurationError):
        train([], default_model())


def test_train_command_writes_a_model_that_replay_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    write_jsonl(generate(200, seed=2, anchor=datetime.now(UTC).replace(hour=0)), events)
    model = tmp_path / "model.json"
    # --force: this test is about replay reading what train writes, whatever the appraisal says.
    train = ["train", str(events), "--output", str(model), "--random-pairs", "5000", "--force"]
    assert main(train) == 0
    printed = capsys.readouterr().out
    assert "match_weight" in printed and "first_name" in printed
    assert Model.load(model).comparisons
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(events), "--output", str(out), "--model", str(model)]) == 0
    assert out.read_text().count("\n") == events.read_text().count("\n")
    assert main(["replay", str(events), "--output", str(out), "--model", str(tmp_path)]) == 2


def test_training_keeps_the_models_structure_and_reports_convergence(trained: Model) -> None:
    start = default_model()
    assert trained.reversed_names_m == start.reversed_names_m
    assert trained.dependencies == start.dependencies
    assert trained.tf_attributes == start.tf_attributes
    assert 0 < trained.probability_two_random_records_match < 0.5


@pytest.fixture(scope="module")
def records() -> list[Features]:
    events = map_touches(generate(300, seed=8, anchor=ANCHOR)).events
    return records_of(events, Normaliser())


def test_a_model_that_links_everything_is_expected_worse(records: list[Features]) -> None:
    careless = default_model().replace(probability_two_random_records_match=0.45)
    report = TrainingReport(len(records), 0, 0, 3, careless, converged=True)
    appraisal = appraise(records, default_model(), report)
    assert appraisal.newly_linked > 0
    assert appraisal.trained.scores.precision < appraisal.current.scores.precision
    assert appraisal.worse
    assert "expected worse" in appraisal.render()


def test_a_model_from_em_that_did_not_converge_is_expected_worse(records: list[Features]) -> None:
    report = TrainingReport(len(records), 0, 0, 25, default_model(), converged=False)
    appraisal = appraise(records, default_model(), report)
    assert appraisal.newly_linked == appraisal.no_longer_linked == 0
    assert appraisal.worse
    assert "did not converge" in appraisal.render()


def test_a_model_that_changes_too_many_decisions_is_expected_worse(
    records: list[Features],
) -> None:
    """More than a quarter of the current links changed: refused whatever the committee says
    of precision and F1 (a model that learnt to forgive relatives changes that many)."""
    report = TrainingReport(len(records), 0, 0, 3, default_model(), converged=True)
    same = appraise(records, default_model(), report)
    assert same.changed_share == 0 and not same.worse and same.reasons == []
    assert "not expected worse" in same.render()
    bolder = default_model().replace(probability_two_random_records_match=0.45)
    report = TrainingReport(len(records), 0, 0, 3, bolder, converged=True)
    appraisal = appraise(records, default_model(), report)
    share = (appraisal.newly_linked + appraisal.no_longer_linked) / appraisal.current.linked
    assert appraisal.changed_share == pytest.approx(share) and share > MAX_CHANGE
    assert any("of the current model's decisions" in reason for reason in appraisal.reasons)
    assert appraisal.worse and "of the current model's decisions" in appraisal.render()
    lenient = replace(appraisal, max_change=share + 0.01)
    assert all("decisions" not in reason for reason in lenient.reasons)


def test_train_refuses_to_write_a_worse_model_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pipeline.quality.training as training

    events = tmp_path / "events.jsonl"
    write_jsonl(generate(150, seed=2, anchor=datetime.now(UTC).replace(hour=0)), events)
    careless = default_model().replace(probability_two_random_records_match=0.45)
    monkeypatch.setattr(
        training,
        "train",
        lambda records, *_a, **_k: TrainingReport(len(records), 0, 0, 3, careless),
    )
    model = tmp_path / "model.json"
    assert main(["train", str(events), "--output", str(model)]) == 1
    assert not model.exists()
    assert "NOT written" in capsys.readouterr().out
    assert main(["train", str(events), "--output", str(model), "--force"]) == 0
    assert Model.load(model) == careless
