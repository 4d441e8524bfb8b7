"""`omnistitch kpis` over a replay's journeys and identity changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.synthetic.generator import generate, write_jsonl
from pipeline.cli import main


def test_kpis_of_a_replay_with_accuracy_against_the_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    write_jsonl(generate(120, seed=4, anchor=datetime.now(UTC).replace(hour=0)), events)
    journeys, changes = tmp_path / "journeys.jsonl", tmp_path / "changes.jsonl"
    replay = ["replay", str(events), "--output", str(tmp_path / "out.jsonl")]
    assert main([*replay, "--journeys", str(journeys), "--changes", str(changes)]) == 0
    capsys.readouterr()
    assert main(["kpis", str(journeys), "--changes", str(changes), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    conversion = found["cross_channel_conversion"]
    assert 0 < conversion["cross_channel_orders"] <= conversion["orders"]
    for model in ("first_touch", "last_touch", "linear", "position_based"):
        assert sum(found["attribution"][model]["orders"].values()) == pytest.approx(
            conversion["orders"], abs=0.01
        )
    assert found["click_and_collect"]["orders"] >= found["click_and_collect"]["picked_up"] > 0
    assert found["support_effort"]["solved"] > 0
    assert 0 < found["identification"]["rate"] <= 1
    assert found["nps"]["responses"] > 0 and -100 <= found["nps"]["score"] <= 100
    assert 0.9 < found["stitching_accuracy"]["precision"] <= 1
    # Without the merges the customers are the ones events reached first: more of them.
    assert main(["kpis", str(journeys), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["customers"] >= found["customers"]
    assert main(["kpis", str(tmp_path / "missing.jsonl")]) == 2
