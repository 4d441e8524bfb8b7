"""Pairwise and B-cubed scores, and the eval command."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.synthetic.generator import generate, write_jsonl
from pipeline.cli import main
from pipeline.quality.evaluation import b_cubed, evaluate, pairwise

TRUTH = {"a": "p1", "b": "p1", "c": "p1", "d": "p2", "e": "p2"}


def test_perfect_clustering_scores_one() -> None:
    assert pairwise(TRUTH, TRUTH).f1 == 1.0
    assert b_cubed(TRUTH, TRUTH).f1 == 1.0


def test_pairwise_counts_pairs() -> None:
    # a,b together; c alone; d,e merged with c? no: predicted {a,b} {c,d,e}
    predicted = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "y"}
    scores = pairwise(predicted, TRUTH)
    # true pairs: ab ac bc de = 4; predicted pairs: ab cd ce de = 4; both: ab de = 2
    assert (scores.precision, scores.recall) == (0.5, 0.5)
    assert scores.f1 == 0.5


def test_b_cubed_averages_over_records() -> None:
    predicted = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "y"}
    scores = b_cubed(predicted, TRUTH)
    # precision: a,b 2/2; c 1/3; d,e 2/3 → (1+1+1/3+2/3+2/3)/5
    assert scores.precision == pytest.approx((2 + 1 / 3 + 4 / 3) / 5)
    # recall: a,b 2/3; c 1/3; d,e 2/2 → (2/3+2/3+1/3+1+1)/5
    assert scores.recall == pytest.approx((4 / 3 + 1 / 3 + 2) / 5)


def test_evaluate_ranks_the_worst_false_merges_and_missed_links() -> None:
    predicted = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "y"}
    result = evaluate(predicted, TRUTH)
    assert [cluster for cluster, _people in result.false_merges] == ["y"]
    assert [person for person, _parts in result.missed_links] == ["p1"]
    assert "pairwise   precision 0.5000" in result.render()


def test_eval_command_prints_scores_and_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    write_jsonl(generate(150, seed=4, anchor=datetime.now(UTC).replace(hour=0)), events)
    assert main(["eval", str(events), "--worst", "2"]) == 0
    out = capsys.readouterr()
    assert "pairwise   precision" in out.out
    assert "B-cubed    precision" in out.out
    assert "worst false merges" in out.out and "worst missed links" in out.out
    assert "probabilistic:" in out.err
    assert main(["eval", str(events), "--no-probabilistic"]) == 0
    assert "probabilistic: off" in capsys.readouterr().err
