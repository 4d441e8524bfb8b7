"""`omnistitch collector|files|generate`: the channel connectors and the synthetic customers."""

from __future__ import annotations

import argparse

from pipeline.cli.console import say, setup_logging
from pipeline.exceptions import ConfigurationError
from pipeline.settings import Settings


def cmd_collector(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.http.server import serve

    setup_logging(settings)
    serve(settings)
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The profile API and viewer (pipeline.serving), over a view of the output topics."""
    from pipeline import garbage
    from pipeline.serving.server import run
    from pipeline.stream.transport import check_kafka

    garbage.tune()  # fewer, shorter collector pauses: they show as p99 latency
    setup_logging(settings)
    check_kafka(settings.kafka_security())
    run(settings, catch_up_s=args.catch_up)
    return 0


def cmd_activate(args: argparse.Namespace, settings: Settings) -> int:
    """Audiences on the profiles topic (pipeline.activation)."""
    import signal
    from pathlib import Path

    from pipeline.activation.delivery import Members, WebhookSink, wait_all
    from pipeline.activation.stage import ActivationStage, load_audiences, load_destinations
    from pipeline.stream.serialization import RegistrySerde
    from pipeline.stream.transport import check_kafka
    from pipeline.vault.client import VaultClient
    from pipeline.vault.store import RocksCells

    setup_logging(settings)
    path = Path(args.audiences) if args.audiences else settings.audiences_file
    if path is None:
        raise ConfigurationError(
            "no audience definitions: --audiences FILE or OMNISTITCH_AUDIENCES_FILE"
        )
    audiences = load_audiences(path)
    check_kafka(settings.kafka_security())
    cells = RocksCells(settings.activation_dir / "memberships", sync=False)
    serde = RegistrySerde.from_access(settings.registry_access())
    serde.register(settings.topic_prefix)
    vault = VaultClient.from_settings(settings)
    stage = ActivationStage(settings, audiences, cells, serde, vault, definitions=path)
    targets = Path(args.destinations) if args.destinations else settings.destinations_file
    destinations = load_destinations(targets) if targets else []
    m = stage.memberships
    members = Members(m.profile, m.members, m.opener, cells)
    sinks = [WebhookSink(settings, d, serde, members) for d in destinations]
    signal.signal(signal.SIGTERM, stage.stop)
    signal.signal(signal.SIGINT, stage.stop)
    say(f"activate: {len(audiences)} audiences from {path}, {len(sinks)} destinations")
    for sink in sinks:
        sink.start()
    try:
        stage.run()
    finally:
        for sink in sinks:
            sink.stop()
        wait_all(sinks, 30)
        cells.close()
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """An audience's members for an ad platform, hashed (pipeline.activation.export)."""
    from pathlib import Path

    from pipeline.activation.export import export
    from pipeline.stream.serialization import RegistrySerde
    from pipeline.stream.transport import check_kafka
    from pipeline.vault.client import VaultClient

    setup_logging(settings)
    check_kafka(settings.kafka_security())
    serde = RegistrySerde.from_access(settings.registry_access())
    vault = VaultClient.from_settings(settings)
    output = Path(args.output)
    customers, rows = export(settings, serde, vault, args.audience, args.platform, output)
    say(
        f"export: {customers} customers of {args.audience}, {rows} rows for {args.platform} "
        f"in {output}"
    )
    return 0


def cmd_files(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from connectors.files.loader import run_files

    setup_logging(settings)
    totals = run_files(settings, once=args.once, drop_dir=Path(args.dir) if args.dir else None)
    say(f"files: {totals['rows']} events and {totals['dead_letters']} dead letters delivered")
    return 0


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from connectors.synthetic.generator import generate, write_jsonl
    from connectors.synthetic.sending import send

    if not args.output and not args.send:
        raise ConfigurationError("generate: give --output FILE.jsonl, --send, or both")
    scenario = generate(args.customers, args.seed, corruption=args.corruption)
    if args.output:
        count = write_jsonl(scenario, Path(args.output))
        say(f"generate: {count} events of {args.customers} customers written to {args.output}")
    if args.send:
        url = args.collector_url or f"http://{settings.collector_host}:{settings.collector_port}"
        key = args.write_key or next(iter(settings.write_keys), None)
        if not key:
            raise ConfigurationError("generate --send: set OMNISTITCH_WRITE_KEYS or --write-key")
        report = send(scenario, url, key, settings.drop_dir)
        say(f"generate: sent {report.render()}")
    return 0
