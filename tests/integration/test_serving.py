"""The profile API on the real broker: a worker stitches, ``omnistitch serve`` follows the output
topics; lookups by any identifier, a link through the API and the merged-away id's redirect, an
erase, a restart and a rebuild from the topics agree; the worker's metrics and health."""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.contract.models import Identifier, Traits
from pipeline.stack.nodes import free_port
from tests.factories import make_event
from tests.integration.conftest import WorkerProcess
from tests.integration.deployments import Run, wait_for

pytestmark = pytest.mark.integration

TOKEN = "integration-api-token-0123456789"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def call(
    base: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(  # noqa: S310 - a local test server
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with OPENER.open(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read() or b"null"), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)
    except OSError:
        return 0, None, {}


def start_serve(
    run: Run, worker_process: Callable[..., WorkerProcess], folder: Path
) -> tuple[WorkerProcess, str]:
    port = free_port()
    proc = worker_process(
        [sys.executable, "-m", "pipeline.cli", "serve"],
        {
            **run.env,
            "OMNISTITCH_SERVE_PORT": str(port),
            "OMNISTITCH_SERVE_DIR": str(folder),
            "OMNISTITCH_API_TOKENS": json.dumps({"qa": hashlib.sha256(TOKEN.encode()).hexdigest()}),
            "OMNISTITCH_API_OPERATORS": '["qa"]',
            "OMNISTITCH_API_ACCESS_LOG": "true",
        },
        name="serve",
    )
    proc.start()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: call(base, "/health/ready")[0] == 200, "serve ready", 90)
    return proc, base


def text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - a local test server
        return str(answer.read().decode())


def lookup(base: str, namespace: str, value: str) -> tuple[int, Any]:
    from urllib.parse import urlencode

    status, body, _ = call(
        base, "/v1/lookup?" + urlencode({"namespace": namespace, "value": value})
    )
    return status, body


def test_the_api_follows_the_topics_through_a_link_an_erase_and_restarts(
    run_factory: Callable[[int], Run],
    worker_process: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    run = run_factory(2)
    run.env["OMNISTITCH_ERASURE_KEY"] = "integration-erasure-key-" + "0" * 16
    metrics_port = free_port()
    worker = run.worker("w0")
    worker.start(OMNISTITCH_METRICS_PORT=str(metrics_port))
    ann = Identifier(namespace="email", value="ann.lee@example.com")
    phone = Identifier(namespace="phone", value="+4915112345678")
    ben = Identifier(namespace="email", value="ben.ng@example.com")
    run.produce(
        [
            make_event(event_id="s1", identifiers=[ann], traits=Traits(first_name="Ann")),
            make_event(event_id="s2", identifiers=[ann, phone]),
            make_event(event_id="s3", identifiers=[ben], traits=Traits(first_name="Ben")),
        ]
    )
    run.wait_for_journeys({"s1", "s2", "s3"})
    serve, base = start_serve(run, worker_process, tmp_path / "serve")

    wait_for(lambda: lookup(base, "phone", "0151 12345678")[0] == 200, "ann by phone")
    status, found = lookup(base, "email", " Ann.Lee@EXAMPLE.com")
    assert status == 200 and found["traits"]["first_name"] == "Ann"
    ann_id = found["customer_id"]
    journey = call(base, f"/v1/customers/{ann_id}/journey")[1]
    assert {e["event"]["event_id"] for e in journey["events"]} == {"s1", "s2"}
    ben_id = lookup(base, "email", "ben.ng@example.com")[1]["customer_id"]

    # A link through the API: the running worker applies it, the view follows.
    status, result, _ = call(
        base,
        "/v1/operations",
        {"kind": "link", "left": "email:ann.lee@example.com", "right": "email:ben.ng@example.com"},
    )
    assert status == 200 and result["status"] == "done", result
    survivor = result["customer_id"]
    loser = ben_id if survivor == ann_id else ann_id
    wait_for(lambda: call(base, f"/v1/customers/{loser}")[0] == 301, "the loser redirects")
    _, moved, headers = call(base, f"/v1/customers/{loser}")
    assert moved["merged_into"] == survivor and headers["Location"].endswith(survivor)
    assert lookup(base, "email", "ben.ng@example.com")[1]["customer_id"] == survivor
    explained = call(
        base, "/v1/explain?left=email:ann.lee@example.com&right=phone:%2B4915112345678"
    )
    assert explained[1]["explanation"]["joined"] is True, explained
    graph = call(base, f"/v1/customers/{survivor}/graph")[1]
    assert any(e["kind"] == "merged" and e["rule"] == "operator" for e in graph["edges"]), graph
    before = call(base, f"/v1/customers/{survivor}")[1]

    # A restart resumes from the view's offsets; a new view rebuilds from the topics.
    assert serve.stop() == 0, serve.tail()
    serve, base = start_serve(run, worker_process, tmp_path / "serve")
    assert call(base, f"/v1/customers/{survivor}")[1] == before
    rebuilt, rebuilt_base = start_serve(run, worker_process, tmp_path / "serve-rebuilt")
    assert call(rebuilt_base, f"/v1/customers/{survivor}")[1] == before
    assert call(rebuilt_base, f"/v1/customers/{loser}")[0] == 301
    assert rebuilt.stop() == 0

    # An erase: the person is gone from the view.
    status, result, _ = call(base, "/v1/operations", {"kind": "erase", "left": survivor})
    assert status == 200 and result["status"] == "done", result
    wait_for(lambda: call(base, f"/v1/customers/{survivor}")[0] == 410, "erased: 410")
    assert lookup(base, "email", "ann.lee@example.com")[0] == 404
    metrics_text = text(f"{base}/metrics")
    assert 'omnistitch_records_out_total{stage="serve",topic="erased"}' in metrics_text
    assert serve.stop() == 0, serve.tail()
    log = serve.tail(1_000_000)
    assert "ann.lee" not in log and "15112345678" not in log and "api: GET /v1/lookup 404" in log

    # The worker's stages report through its probe server.
    worker_base = f"http://127.0.0.1:{metrics_port}"
    wait_for(lambda: call(worker_base, "/health/ready")[0] == 200, "worker ready", 60)
    exposed = text(f"{worker_base}/metrics")
    for expected in (
        'omnistitch_records_in_total{stage="intake"}',
        'omnistitch_records_in_total{stage="link"}',
        'omnistitch_identity_changes_total{change_type="merged"}',
        'omnistitch_stage_ready{stage="profile"} 1.0',
        "omnistitch_stage_restarts_total",
    ):
        assert expected in exposed, expected
