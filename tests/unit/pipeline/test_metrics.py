"""The probe server (/metrics, /health/live, /health/ready) and the worker's multi-process
metrics: stage processes write files, the worker adds them up and reads readiness from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import metrics


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - a local test server
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_probes_answer_health_and_metrics() -> None:
    ready = [False]
    server = metrics.probe_server(0, lambda: True, lambda: ready[0])
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        metrics.RECORDS_IN.labels("unit").inc(3)
        assert _get(base + "/health/live") == (200, b'{"live": true}')
        assert _get(base + "/health/ready")[0] == 503
        ready[0] = True
        assert json.loads(_get(base + "/health/ready")[1]) == {"ready": True}
        status, body = _get(base + "/metrics")
        assert status == 200
        assert b'omnistitch_records_in_total{stage="unit"}' in body
        assert _get(base + "/elsewhere")[0] == 404
    finally:
        server.shutdown()


@dataclass
class _Child:
    stage: str
    restarts: list[float] = field(default_factory=list)


def test_stage_processes_metrics_add_up_in_the_workers_registry(tmp_path: Path) -> None:
    script = (
        "from pipeline import metrics\n"
        "import sys\n"
        "metrics.RECORDS_IN.labels(sys.argv[1]).inc(5)\n"
        "metrics.STAGE_READY.labels(sys.argv[1]).set(1)\n"
    )
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    for stage in ("intake", "link"):
        subprocess.run([sys.executable, "-c", script, stage], env=env, check=True, timeout=60)
    assert metrics.ready_stages(tmp_path) == {"intake", "link"}
    registry = metrics.stage_registry(tmp_path, [_Child("intake", [1.0]), _Child("link")])
    text = metrics.exposition(registry).decode()
    assert 'omnistitch_records_in_total{stage="intake"} 5.0' in text
    assert 'omnistitch_stage_restarts_total{stage="intake"} 1.0' in text


def test_the_size_of_a_state_folder(tmp_path: Path) -> None:
    assert metrics.folder_bytes(tmp_path / "absent") == 0
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.sst").write_bytes(b"1" * 1000)
    (tmp_path / "y.log").write_bytes(b"2" * 24)
    assert metrics.folder_bytes(tmp_path) == 1024
