"""`make demo`: the main job end to end on the local stack, through the real connectors.

Starts the stitching worker, the HTTP collector and the file connector as processes, sends the
generator's data for a few thousand customers through them (Segment calls and webhooks over HTTP,
POS and CRM exports dropped as files, plus a few broken records), waits until the stitcher has
caught up, erases one customer through the running worker (an operator's ``omnistitch erase``)
and prints a report. Every run uses a new seed and a new write key, so it can be run
again on the same stack.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from connectors.files.loader import TopicProbe
from connectors.synthetic.generator import generate, map_touches
from connectors.synthetic.sending import send
from pipeline.activation.receiver import Receiver
from pipeline.cli.showcase import activation_files, activation_tour, api_tour
from pipeline.contract.dead_letters import DeadLetter
from pipeline.contract.intake import check
from pipeline.contract.models import ChangeType, ChannelEvent, IdentityChange, JourneyEvent
from pipeline.engine.graph import merge_forwarding
from pipeline.insight.histories import histories as customer_histories
from pipeline.insight.kpis import render, report
from pipeline.quality.evaluation import stitching_accuracy
from pipeline.settings import Settings
from pipeline.stack.local import free_port, port_open
from pipeline.stream.serialization import RegistrySerde
from pipeline.stream.topics import DEAD_LETTERS, EVENTS, IDENTITY_CHANGES, JOURNEYS, create_topics
from pipeline.vault.client import VaultClient
from pipeline.vault.sealing import event_key_id

# The topics the report reads, from where they ended when the demo started.
WATCHED = (EVENTS, JOURNEYS, IDENTITY_CHANGES, DEAD_LETTERS)

CUSTOMERS = int(os.environ.get("DEMO_CUSTOMERS", "2000"))
CATCH_UP_TIMEOUT_S = float(os.environ.get("DEMO_TIMEOUT_S", "900"))
STALL_S = 120


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )


def _start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    with (logs / f"demo-{name}.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the collector stopped while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the collector did not answer {url} within {timeout_s:.0f}s")


def _broken_records(base_url: str, write_key: str, drop_dir: Path, seed: int) -> int:
    """What real channels also send: a call nobody can be found in, a till row cut short."""
    body = json.dumps(
        {"batch": [{"type": "track", "event": "Checkout Started", "messageId": f"bad-{seed}"}]}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback URL
        f"{base_url}/v1/batch", data=body, headers={"Content-Type": "application/json"}
    )
    request.add_header("X-Write-Key", write_key)
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - loopback URL
        pass
    folder = drop_dir / "pos"
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".pos-broken-{seed}.csv.part"
    part.write_text(
        "receipt_id,store_id,timestamp,loyalty_card,amount,currency\n"
        f"R-bad-{seed},store-099,2026-11-01T10:00:00Z\n",
        encoding="utf-8",
    )
    part.rename(folder / f"pos-broken-{seed}.csv")
    return 2


def main() -> int:
    settings = Settings()
    prefix, bootstrap = settings.topic_prefix, settings.bootstrap_servers
    kafka = settings.kafka_security()
    create_topics(kafka, prefix, settings.partitions)
    serde = RegistrySerde.from_access(settings.registry_access())
    serde.register(prefix)
    probe = TopicProbe(kafka)
    try:
        start = {t.suffix: probe.ends(t.name(prefix)) for t in WATCHED}
    finally:
        probe.close()

    seed = int(time.time())
    write_key = secrets.token_urlsafe(24)  # per run, never stored
    port = settings.collector_port if not port_open(settings.collector_port) else free_port()
    env = {
        "OMNISTITCH_WRITE_KEYS": json.dumps({write_key: "segment"}),
        "OMNISTITCH_COLLECTOR_PORT": str(port),
        # The demo sends weeks of data in seconds: a generous rate limit (429s are retried).
        "OMNISTITCH_COLLECTOR_RATE_PER_S": os.environ.get(
            "OMNISTITCH_COLLECTOR_RATE_PER_S", "1000"
        ),
        "OMNISTITCH_COLLECTOR_BURST": os.environ.get("OMNISTITCH_COLLECTOR_BURST", "2000"),
    }
    logs = Path(settings.stack_dir)
    logs.mkdir(parents=True, exist_ok=True)
    if not settings.erasure_key.get_secret_value():
        env["OMNISTITCH_ERASURE_KEY"] = _erasure_key(logs)
    if not settings.vault_url:  # the stack's vault: connectors seal, an erase shreds
        env["OMNISTITCH_VAULT_URL"] = f"http://127.0.0.1:{settings.vault_port}"
    settings = settings.model_copy(
        update={"vault_url": env.get("OMNISTITCH_VAULT_URL", settings.vault_url)}
    )
    base_url = f"http://{settings.collector_host}:{port}"
    api_port = settings.serve_port if not port_open(settings.serve_port) else free_port()
    receiver = Receiver()
    activation = activation_files(logs, receiver.url)
    procs = {
        "worker": _start("worker", ["worker"], env, logs),
        "activate": _start(
            "activate",
            ["activate", "--audiences", str(activation[0]), "--destinations", str(activation[1])],
            {**env, "OMNISTITCH_ACTIVATION_DIR": str(logs / "demo-activate")},
            logs,
        ),
        "collector": _start("collector", ["collector"], env, logs),
        "files": _start("files", ["files"], env, logs),
        "serve": _start("serve", ["serve"], {**env, "OMNISTITCH_SERVE_PORT": str(api_port)}, logs),
    }
    try:
        _wait_healthy(f"{base_url}/health", procs["collector"])
        scenario = generate(CUSTOMERS, seed)
        began = time.monotonic()
        report = send(scenario, base_url, write_key, settings.drop_dir)
        broken = _broken_records(base_url, write_key, settings.drop_dir, seed)
        sent = time.monotonic()
        print(f"demo: {CUSTOMERS} synthetic customers (seed {seed}) sent through the connectors:")
        print(f"      {report.render()}, plus {broken} broken records")

        now, policy = datetime.now(UTC), settings.intake_policy()
        expected = {
            e.event_id
            for e in map_touches(scenario).events
            if isinstance(check(e, now, policy), ChannelEvent)
        }
        journeys = _consumer(bootstrap)
        topic = JOURNEYS.name(prefix)
        journeys.assign(
            [TopicPartition(topic, int(p), o) for p, o in start[JOURNEYS.suffix].items()]
        )
        seen: set[str] = set()
        progress: list[float] = [0, time.monotonic()]  # journeys seen, when that last changed
        shown, lead = 0.0, "\r" if sys.stdout.isatty() else "\n"
        try:
            while not expected <= seen:
                for msg in journeys.consume(2000, 1.0):
                    if not msg.error() and msg.value():
                        record = serde.decode(topic, msg.value() or b"", JourneyEvent)
                        seen.add(record["event"]["event_id"])
                if time.monotonic() - shown > 2 or expected <= seen:
                    shown = time.monotonic()
                    done = len(expected & seen)
                    print(f"{lead}demo: stitcher caught up {done}/{len(expected)} events", end="")
                    sys.stdout.flush()
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        print(
                            f"\ndemo: the {name} stopped; see {logs}/demo-{name}.log",
                            file=sys.stderr,
                        )
                        return 1
                if len(seen) != progress[0]:
                    progress[:] = [len(seen), time.monotonic()]
                stalled = time.monotonic() - progress[1] > STALL_S
                if stalled or time.monotonic() - began > CATCH_UP_TIMEOUT_S:
                    missing = sorted(expected - seen)
                    why = f"no progress for {STALL_S}s" if stalled else "timeout"
                    print(
                        f"\ndemo: {why}; {len(missing)} events not stitched, "
                        f"e.g. {missing[:3]}; see {logs}/demo-*.log",
                        file=sys.stderr,
                    )
                    return 1
        finally:
            journeys.close()
        done_at = time.monotonic()
        print(
            f"\ndemo: sent in {sent - began:.0f}s (collector rate limit, file polling), "
            f"all stitched {done_at - sent:.1f}s after the last was sent "
            f"({done_at - began:.0f}s in all)"
        )
        first = str(scenario.people[0].pid)
        theirs = [
            e.event_id
            for e in map_touches(scenario).events
            if e.properties.get("truth_person_id") == first and e.event_id in expected
        ]
        _erase_one(settings, scenario.people[0].email, theirs)
        api_tour(settings, f"http://127.0.0.1:{api_port}", scenario.people)
        activation_tour(settings, serde, receiver, activation[0])
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    _report(settings, serde, start, len(scenario.people))
    return 0


def _erasure_key(stack: Path) -> str:
    """The local stack's erasure key: made once, kept in the stack folder (git-ignored, 0600),
    so suppressions stay valid across demo runs."""
    path = stack / "erasure.key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _erase_one(settings: Settings, email: str, event_ids: list[str]) -> None:
    """An operator's erase through the running worker (omnistitch erase), for one customer;
    then how many of the person's events on the events topic no longer open (crypto-shredding:
    their keys are gone from the vault)."""
    from pipeline.engine.operations import Operation
    from pipeline.stream.submission import submit

    operation = Operation.from_json(
        {
            "operation_id": f"op-demo-erase-{secrets.token_hex(6)}",
            "kind": "erase",
            "left": f"email:{email}",
            "right": "",
            "operator": "demo",
            "reason": "a customer's erasure request (GDPR Art. 17)",
            "requested_at": datetime.now(UTC),
        }
    )
    answer = submit(settings, operation, 60)
    result = answer.result
    if result is None:
        print("demo: erase of one customer: no answer within 60 s\n")
        return
    print(
        f"demo: `omnistitch erase` of one customer ({result.customer_id}): {result.status}, "
        f"{result.detail}"
    )
    vault = VaultClient.from_settings(settings)
    if vault is not None and event_ids:
        keys = vault.fetch([event_key_id(event_id) for event_id in event_ids])
        dark = sum(1 for event_id in event_ids if keys.get(event_key_id(event_id)) is None)
        print(
            f"      crypto-shredding: {dark} of the person's {len(event_ids)} events on the "
            "events topic no longer open (their keys left the vault)\n"
        )


def _kpis(journeys: list[JourneyEvent], final: Callable[[str], str]) -> None:
    """The omnichannel KPIs of this run (omnistitch kpis), with stitching accuracy against the
    synthetic persons the generator put in every event."""
    found = customer_histories(journeys, final)
    accuracy = stitching_accuracy(found)
    print("\n  KPIs (omnistitch kpis; definitions in docs/kpis.md):")
    for line in render(report(found, accuracy=accuracy)).splitlines():
        print(f"    {line}")


def _report(settings: Settings, serde: RegistrySerde, start: dict[str, Any], persons: int) -> None:
    prefix = settings.topic_prefix
    probe = TopicProbe(settings.kafka_security())
    try:
        # Every message from the start of this run to the end of each topic as it is now.
        read = {t.suffix: probe.arrived(t.name(prefix), start[t.suffix]) for t in WATCHED}
    finally:
        probe.close()
    events_in = read[EVENTS.suffix]
    arrived = [serde.decode(EVENTS.name(prefix), m.value(), ChannelEvent) for m in events_in]
    this_run = {e["event_id"] for e in arrived}
    journeys_all = [
        JourneyEvent.from_avro(serde.decode(JOURNEYS.name(prefix), m.value(), JourneyEvent))
        for m in read[JOURNEYS.suffix]
    ]
    # The worker may also have worked off input that was waiting from before this run: the
    # report is about this run's events only.
    journeys = [j for j in journeys_all if j.event.event_id in this_run]
    backlog = len(journeys_all) - len(journeys)
    changes = [
        IdentityChange.from_avro(
            serde.decode(IDENTITY_CHANGES.name(prefix), m.value(), IdentityChange)
        )
        for m in read[IDENTITY_CHANGES.suffix]
    ]
    letters = [
        DeadLetter.from_message(m.key(), m.value(), m.headers() or [])
        for m in read[DEAD_LETTERS.suffix]
    ]
    final = merge_forwarding(changes)
    distinct = [
        c
        for c in {c.change_id: c for c in changes}.values()
        if not c.evidence or any(e.event_id in this_run for e in c.evidence)
    ]
    kinds = Counter(c.change_type for c in distinct)
    history: dict[str, list[JourneyEvent]] = defaultdict(list)
    for journey in journeys:
        history[final(journey.customer_id)].append(journey)
    paths: Counter[str] = Counter()
    for touches in history.values():
        steps: list[str] = []
        for j in sorted(touches, key=lambda j: (j.event.occurred_at, j.event.event_id)):
            if not steps or steps[-1] != j.event.channel.value:
                steps.append(j.event.channel.value)
        if len(steps) > 1:
            paths[" → ".join(steps[:4]) + (" → …" if len(steps) > 4 else "")] += 1
    switches = Counter(
        f"{j.previous_channel.value} → {j.event.channel.value}"
        for j in journeys
        if j.channel_switch and j.previous_channel is not None
    )
    reasons = Counter(f"{d.rejection.reason.value} ({d.origin.topic})" for d in letters)
    channels_in = Counter(e["channel"] for e in arrived)
    print(f"  events in            {len(events_in)} on {EVENTS.name(prefix)}")
    print("    by channel         " + ", ".join(f"{k} {v}" for k, v in channels_in.most_common()))
    earlier = f" (and {backlog} of input from before this run)" if backlog else ""
    print(f"  journey events       {len(journeys)}{earlier}")
    print(f"  profiles             {len(history)}  (synthetic persons: {persons})")
    print(f"  merges               {kinds[ChangeType.merged]}")
    probabilistic = sum(
        1
        for c in distinct
        if c.change_type is ChangeType.merged
        and c.evidence
        and c.evidence[0].rule == "probabilistic"
    )
    print(f"    of them by names, birth dates, addresses (probabilistic): {probabilistic}")
    print(f"  possible matches     {kinds[ChangeType.possible_match]} (for review, not merged)")
    print(f"  conflicts            {kinds[ChangeType.conflict]}")
    print(f"  quarantined values   {kinds[ChangeType.quarantined]}")
    print(
        f"  dead letters         {len(letters)}: "
        + ", ".join(f"{k}: {v}" for k, v in reasons.items())
    )
    print("  top cross-channel paths:")
    for path, count in paths.most_common(5):
        print(f"    {count:>5}  {path}")
    print("  top channel switches: " + ", ".join(f"{k} ({v})" for k, v in switches.most_common(5)))
    _kpis(journeys, final)
    customer, touches = max(
        history.items(), key=lambda kv: (len({j.event.channel for j in kv[1]}), len(kv[1]))
    )
    channels = sorted({j.event.channel.value for j in touches})
    print(f"\n  example customer {customer}: {len(touches)} touches on {', '.join(channels)}")
    for j in sorted(touches, key=lambda j: (j.event.occurred_at, j.event.event_id))[:15]:
        when = f"{j.event.occurred_at:%Y-%m-%d %H:%M}"
        print(f"    {when}  {j.event.channel.value:<12} {j.event.event_type:<20} {j.event.source}")
    print(
        f"\nWhere to look next: topics {prefix}profiles.v1 (compacted), {prefix}journeys.v1, "
        f"{prefix}identity-changes.v1, {prefix}dead-letters.v1; logs in {settings.stack_dir}/"
        "demo-*.log; `make status`; stop the stack with `make down`."
    )


if __name__ == "__main__":
    sys.exit(main())
