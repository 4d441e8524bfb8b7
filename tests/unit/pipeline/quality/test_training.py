"""Training a match model without labels: u by random sampling, m by EM."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.synthetic.generator import generate, map_touches, write_jsonl
from pipeline.cli import main
from pipeline.engine.comparisons import Model
from pipeline.engine.identifiers import Normaliser
from pipeline.engine.weights import default_model
from pipeline.exceptions import ConfigurationError
from pipeline.quality.training import records_of, train

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
    for comparison in ("first_name", "last_name", "birth_date", "postal_code"):
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
    assert main(["train", str(events), "--output", str(model), "--random-pairs", "5000"]) == 0
    printed = capsys.readouterr().out
    assert "match_weight" in printed and "first_name" in printed
    assert Model.load(model).comparisons
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(events), "--output", str(out), "--model", str(model)]) == 0
    assert out.read_text().count("\n") == events.read_text().count("\n")
    assert main(["replay", str(events), "--output", str(out), "--model", str(tmp_path)]) == 2
