"""Worker, collector and file connector over SASL_SSL (SCRAM) on a broker of the project's own
local stack (self-signed CA, SCRAM users created through Kafka's API), and no personal data or
secret in any of their logs. A wrong password fails fast with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.synthetic.generator import generate, map_touches
from connectors.synthetic.sending import send
from pipeline.contract.models import JourneyEvent
from pipeline.stack.local import LocalStack, StackConfig, free_port
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import JOURNEYS, create_topics
from pipeline.stream.transport import KafkaSecurity
from tests.conftest import REPO_ROOT
from tests.integration.conftest import WorkerProcess, consume, wait_healthy

pytestmark = pytest.mark.integration

USER, PASSWORD = "omni-client", "scram-pw-5c1e9b"
WRITE_KEY = "secure-write-key-91d0"
EMAIL, PHONE, NAME = "greta.schoenfeld@example.de", "+49 151 2345678", "Schönfeld"


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig(
        home=tmp_path_factory.mktemp("secure-stack"),
        lib_dir=REPO_ROOT / "stack" / "lib",
        kafka_port=free_port(),
        controller_port=free_port(),
        registry_port=free_port(),
        vault_port=free_port(),
        secure_port=free_port(),
        secure_users=((USER, PASSWORD),),
    )
    stack = LocalStack(config)
    stack.up()
    yield stack
    stack.down()


def _env(
    stack: LocalStack, prefix: str, tmp_path: Path, password: str = PASSWORD
) -> dict[str, str]:
    return {
        "OMNISTITCH_BOOTSTRAP_SERVERS": stack.config.secure_bootstrap_servers,
        "OMNISTITCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "OMNISTITCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "OMNISTITCH_KAFKA_SASL_USERNAME": USER,
        "OMNISTITCH_KAFKA_SASL_PASSWORD": password,
        "OMNISTITCH_KAFKA_SSL_CA_FILE": str(stack.kafka.ca_file),
        "OMNISTITCH_SCHEMA_REGISTRY_URL": stack.config.registry_url,
        "OMNISTITCH_TOPIC_PREFIX": prefix,
        "OMNISTITCH_PARTITIONS": "2",
        "OMNISTITCH_WRITE_KEYS": json.dumps({WRITE_KEY: "web-shop"}),
        "OMNISTITCH_DROP_DIR": str(tmp_path / "drop"),
        "OMNISTITCH_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "OMNISTITCH_DATA_DIR": str(tmp_path / "worker"),
        "OMNISTITCH_APP_ID": f"secure-{prefix}",
        "OMNISTITCH_STATS_INTERVAL_S": "2",
        "OMNISTITCH_LOG_LEVEL": "debug",
    }


def test_worker_and_connectors_over_sasl_ssl_without_personal_data_in_logs(
    secure_stack: LocalStack,
    unique_name: Callable[[str], str],
    worker_process: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    prefix = unique_name("sec") + "."
    security = KafkaSecurity(
        secure_stack.config.secure_bootstrap_servers,
        "SASL_SSL",
        "SCRAM-SHA-512",
        USER,
        PASSWORD,
        ca_file=secure_stack.kafka.ca_file,
    )
    create_topics(security, prefix, 2)
    env = _env(secure_stack, prefix, tmp_path)
    port = free_port()
    cli = [sys.executable, "-m", "pipeline.cli"]
    worker = worker_process([*cli, "worker"], env, name="worker")
    collector = worker_process(
        [*cli, "collector"], {**env, "OMNISTITCH_COLLECTOR_PORT": str(port)}, name="collector"
    )
    files = worker_process([*cli, "files"], env, name="files")
    for process in (worker, collector, files):
        process.start()

    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, collector)
    call = {
        "type": "identify",
        "userId": "U-77",
        "messageId": "sec-m-1",
        "traits": {"email": EMAIL, "phone": PHONE, "firstName": "Greta", "lastName": NAME},
        "timestamp": datetime.now(UTC).isoformat(),
    }
    request = urllib.request.Request(  # noqa: S310
        f"{base}/v1/identify",
        data=json.dumps(call).encode(),
        headers={"Content-Type": "application/json", "X-Write-Key": WRITE_KEY},
        method="POST",
    )
    # Like Segment's clients: 503 (Kafka did not acknowledge in time, e.g. a broker that just
    # started) is retried.
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                assert response.status == 200
                break
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and time.monotonic() < deadline, collector.tail()
            time.sleep(2)
    # A malformed request with personal data and the key in it: the HTTP layer must not log it.
    bad = urllib.request.Request(  # noqa: S310
        f"{base}/v1/identify",
        data=b'{"traits": {"email": "' + EMAIL.encode() + b'"',
        headers={"Content-Type": "application/json", "X-Write-Key": WRITE_KEY},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=30)  # noqa: S310
    assert refused.value.code == 400
    # A full run of generated customers: Segment calls and webhooks over HTTP, POS and CRM
    # exports through the file connector.
    scenario = generate(12, seed=4242)
    sent = map_touches(scenario).events
    send(scenario, base, WRITE_KEY, tmp_path / "drop")
    expected = {e.event_id for e in sent} | {"sec-m-1"}

    journeys = consume(
        secure_stack.config.bootstrap_servers,
        JOURNEYS.name(prefix),
        len(expected),
        240,
        worker.tail() + collector.tail() + files.tail(),
    )
    serde = RegistrySerde(secure_stack.config.registry_url)
    ids = {
        serde.decode(JOURNEYS.name(prefix), m.value(), JourneyEvent)["event"]["event_id"]  # type: ignore[arg-type]
        for m in journeys
    }
    assert ids == expected
    for process in (files, collector, worker):
        assert process.stop() == 0, process.tail()
    logs = "".join(p.tail(50_000_000) for p in (worker, collector, files))
    assert "Worker ready" in logs, logs[-2000:]
    personal = {EMAIL, PHONE, NAME, "Greta", "U-77"}
    for event in sent:
        personal |= {
            i.value.strip() for i in event.identifiers if i.namespace in ("email", "phone")
        }
        for value in (
            event.traits.first_name,
            event.traits.last_name,
            event.traits.email,
            event.traits.phone,
            event.traits.street,
        ):
            if value and len(value.strip()) >= 4:
                personal.add(value.strip())
    assert len(personal) > 30 and len(sent) > 50, (len(personal), len(sent))
    assert len(logs) > 100_000  # DEBUG logs of three processes: there was much to leak
    leaked = sorted(value for value in personal | {WRITE_KEY, PASSWORD} if value in logs)
    assert not leaked, leaked


def test_a_wrong_password_fails_fast_with_a_clear_error(
    secure_stack: LocalStack, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    env = _env(secure_stack, unique_name("bad") + ".", tmp_path, password="wrong-password")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "worker"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refused" in done.stderr and "_AUTHENTICATION" in done.stderr
    assert time.monotonic() - started < 30
    assert "wrong-password" not in done.stderr + done.stdout
