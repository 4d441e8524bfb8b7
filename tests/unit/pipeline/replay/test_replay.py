"""`omnistitch replay` end to end as a command, without Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.contract.models import Identifier
from tests.conftest import REPO_ROOT
from tests.factories import make_event, make_stream


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "replay", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_one_line_per_input_with_the_final_customer_after_merges(
    tmp_path: Path, store: str
) -> None:
    web = make_event(identifiers=[Identifier(namespace="anonymous_id", value="anon-77")])
    shop = make_event(identifiers=[Identifier(namespace="email", value="Zoe@Example.ie")])
    link = make_event(
        identifiers=[
            Identifier(namespace="email", value="zoe@example.ie"),
            Identifier(namespace="anonymous_id", value="anon-77"),
        ]
    )
    nobody = make_event(identifiers=[])
    lines = [web.to_json(), shop.to_json(), "", link.to_json(), web.to_json(), nobody.to_json()]
    source = _write(tmp_path / "in.jsonl", lines)
    extra = ["--store", store, "--state-dir", str(tmp_path / "state")] if store == "rocksdb" else []
    done = _run(
        str(source),
        "--output",
        str(tmp_path / "out.jsonl"),
        "--profiles",
        str(tmp_path / "profiles.jsonl"),
        *extra,
    )
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["event_id"] for o in out] == [
        web.event_id,
        shop.event_id,
        link.event_id,
        web.event_id,
        nobody.event_id,
    ]
    assert len({o["customer_id"] for o in out[:4]}) == 1, "merged: one customer after all"
    assert out[4] == {
        "event_id": nobody.event_id,
        "customer_id": None,
        "rejected": "no_identifiers_or_traits",
    }
    profiles = [json.loads(line) for line in (tmp_path / "profiles.jsonl").read_text().splitlines()]
    assert len(profiles) == 1 and profiles[0]["event_count"] == 3
    assert "profiles: 1" in done.stderr and "merges: 1" in done.stderr
    assert "events/s" in done.stderr


def test_an_unreadable_line_stops_with_its_number(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [make_event().to_json(), "{not json", "[1, 2]"])
    done = _run(str(source), "--output", str(tmp_path / "out.jsonl"))
    assert done.returncode != 0
    assert "in.jsonl:2: not JSON" in done.stderr


def test_replay_of_a_generated_stream_counts_every_event(tmp_path: Path) -> None:
    events = make_stream(persons=30, events=400, duplicates=20)
    source = _write(tmp_path / "in.jsonl", [e.to_json() for e in events])
    done = _run(str(source), "--output", str(tmp_path / "out.jsonl"))
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == len(events)
    assert "accepted: 420 (20 repeated event ids)" in done.stderr


def test_a_lone_surrogate_is_rejected_not_a_crash(tmp_path: Path) -> None:
    broken = make_event(event_id="bad").to_json().replace('"anon-', '"\\ud800anon-')
    paired = make_event(event_id="emoji").to_json().replace('"anon-', '"\\ud83d\\ude00anon-')
    source = _write(tmp_path / "in.jsonl", [broken, paired])
    out, journeys = tmp_path / "out.jsonl", tmp_path / "journeys.jsonl"
    done = _run(str(source), "--output", str(out), "--journeys", str(journeys))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"event_id": "bad", "customer_id": None, "rejected": "invalid_utf8"}
    assert rows[1]["customer_id"] is not None  # a surrogate pair is a real character
    assert len(journeys.read_text().splitlines()) == 1


def test_operations_in_the_input_are_applied_in_order_with_the_events(tmp_path: Path) -> None:
    crm = make_event(identifiers=[Identifier(namespace="customer_id", value="CRM-1")])
    web = make_event(identifiers=[Identifier(namespace="anonymous_id", value="anon-9")])
    later = make_event(identifiers=[Identifier(namespace="anonymous_id", value="anon-9")])

    def operation(n: int, kind: str) -> str:
        return json.dumps(
            {
                "operation": {
                    "operation_id": f"op-{n}",
                    "kind": kind,
                    "left": "customer_id:CRM-1",
                    "right": "anonymous_id:anon-9",
                    "operator": "agent-17",
                    "reason": "same person, checked at the till",
                    "requested_at": "2026-11-24T11:00:00Z",
                }
            }
        )

    lines = [crm.to_json(), web.to_json(), operation(1, "link"), operation(1, "link")]
    source = _write(tmp_path / "in.jsonl", [*lines, later.to_json()])
    changes = tmp_path / "changes.jsonl"
    done = _run(str(source), "--output", str(tmp_path / "out.jsonl"), "--changes", str(changes))
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o.get("status") for o in out] == [None, None, "done", "repeat", None]
    survivor = out[0]["customer_id"]
    assert out[1]["customer_id"] == out[2]["customer_id"] == out[4]["customer_id"] == survivor
    rules = [
        c["evidence"][0]["rule"]
        for c in map(json.loads, changes.read_text().splitlines())
        if c["change_type"] == "merged"
    ]
    assert rules == ["operator"]
    assert "operations" in done.stderr and "'done': 1" in done.stderr

    broken = _write(tmp_path / "broken.jsonl", [crm.to_json(), '{"operation": {"kind": "link"}}'])
    failed = _run(str(broken), "--output", str(tmp_path / "out2.jsonl"))
    assert failed.returncode != 0 and "broken.jsonl:2" in failed.stderr
