"""`omnistitch explain` over the graph state a replay kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.contract.models import Identifier
from tests.factories import make_event


def test_explain_prints_the_path_between_two_identifiers_of_a_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    web = make_event(identifiers=[Identifier(namespace="anonymous_id", value="anon-77")])
    shop = make_event(identifiers=[Identifier(namespace="email", value="Zoe@Example.ie")])
    link = make_event(
        identifiers=[
            Identifier(namespace="email", value="zoe@example.ie"),
            Identifier(namespace="anonymous_id", value="anon-77"),
        ]
    )
    other = make_event(identifiers=[Identifier(namespace="email", value="max@example.ie")])
    source = tmp_path / "in.jsonl"
    source.write_text("".join(e.to_json() + "\n" for e in (web, shop, link, other)))
    state = tmp_path / "state"
    replay = ["replay", str(source), "--output", str(tmp_path / "out.jsonl")]
    assert main([*replay, "--store", "rocksdb", "--state-dir", str(state)]) == 0
    capsys.readouterr()

    # The e-mail as typed is normalised exactly as the stitcher does.
    pair = ["anonymous_id:anon-77", "email:ZOE@example.ie", "--state-dir", str(state)]
    assert main(["explain", *pair, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["joined"] is True
    steps = found["left_path"] + found["right_path"]
    (merged,) = [s for s in steps if s["kind"] == "merged"]
    assert merged["event_id"] == link.event_id and merged["rule"] == "shared_identifier"
    assert main(["explain", *pair]) == 0
    assert "are one customer" in capsys.readouterr().out

    apart = ["email:max@example.ie", "email:zoe@example.ie", "--state-dir", str(state)]
    assert main(["explain", *apart]) == 1
    assert "not linked" in capsys.readouterr().out
    assert main(["explain", "email", "email:zoe@example.ie", "--state-dir", str(state)]) == 2
    assert main(["explain", *pair[:2], "--state-dir", str(tmp_path / "none")]) == 2
