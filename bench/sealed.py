"""The worker with crypto-shredding on (docs/erasure.md), for make bench."""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.processes import produce, read_all, span_rate, start, stop, wait_count
from pipeline.contract.models import ChannelEvent
from pipeline.engine.erasure import Suppression
from pipeline.engine.identifiers import Normaliser
from pipeline.stack.local import free_port
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import EVENTS, JOURNEYS, create_topics
from pipeline.vault.client import VaultClient
from pipeline.vault.sealer import Sealer
from pipeline.vault.tags import Tagger


def sealed_worker_rate(
    env: dict[str, str],
    bootstrap: str,
    serde: RegistrySerde,
    events: list[ChannelEvent],
    work: Path,
    fresh_input: Any,
) -> float:
    """Events/s of one worker on input sealed as the connectors seal it, with a vault (its
    own process) and an erasure key: intake opens every batch, both stages seal their
    changelogs, the profile stage its profiles."""
    port, token = free_port(), uuid.uuid4().hex
    vault = start(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "vault",
            "--port",
            str(port),
            "--data",
            str(work / "vault"),
        ],
        {**env, "OMNISTITCH_VAULT_TOKEN": token},
        work / "vault.log",
    )
    client = VaultClient(f"http://127.0.0.1:{port}", token)
    deadline = time.monotonic() + 60
    while not client.healthy():
        if time.monotonic() > deadline:
            raise SystemExit("bench: the vault did not start")
        time.sleep(0.2)
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    sealer = Sealer(client, Tagger(Normaliser(), Suppression(secret.encode())))
    sealed = [e for e in sealer.seal(events, datetime.now(UTC)) if isinstance(e, ChannelEvent)]
    prefix = fresh_input("sealed")  # the plain events go to this topic set's input ...
    topic = EVENTS.name(prefix + "s.")  # ... and the sealed ones to a set of their own
    create_topics(bootstrap, prefix + "s.", int(env["OMNISTITCH_PARTITIONS"]))
    produce(bootstrap, serde, topic, sealed)
    sealed_env = {
        **env,
        "OMNISTITCH_TOPIC_PREFIX": prefix + "s.",
        "OMNISTITCH_APP_ID": prefix + "s-app",
        "OMNISTITCH_VAULT_URL": f"http://127.0.0.1:{port}",
        "OMNISTITCH_VAULT_TOKEN": token,
        "OMNISTITCH_ERASURE_KEY": secret,
    }
    proc = start([sys.executable, "-m", "pipeline.cli", "worker"], sealed_env, work / "sealed.log")
    distinct = len({e.event_id for e in sealed})
    journeys = JOURNEYS.name(prefix + "s.")
    wait_count(bootstrap, journeys, distinct, 1800)
    rate = span_rate(read_all(bootstrap, journeys, distinct, 120))
    stop(proc)
    stop(vault)
    return rate
