"""The ``omnistitch`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import garbage
from pipeline.exceptions import ConfigurationError, OmnistitchError
from pipeline.settings import Settings
from pipeline.stack import KAFKA_VERSION, REGISTRY_VERSION, LocalStack, StackConfig
from pipeline.topics import ALL_TOPICS, create_topics
from pipeline.transport import check_kafka


def stack_config(settings: Settings) -> StackConfig:
    return StackConfig(
        home=settings.stack_dir,
        lib_dir=settings.stack_lib_dir,
        kafka_port=settings.kafka_port,
        controller_port=settings.controller_port,
        registry_port=settings.registry_port,
        kafka_heap=settings.kafka_heap,
        registry_heap=settings.registry_heap,
        ready_timeout_s=settings.ready_timeout_s,
    )


def _say(message: str) -> None:
    print(message, flush=True)


def _secure_config(settings: Settings) -> tuple[StackConfig, Path]:
    """The stack with a SASL_SSL listener; its SCRAM user's password is made once and kept
    (with the other client settings) in <stack dir>/secure.env, readable by its owner only."""
    import dataclasses
    import secrets

    env_file = settings.stack_dir / "secure.env"
    found = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            found[name] = value
    password = found.get("OMNISTITCH_KAFKA_SASL_PASSWORD") or secrets.token_urlsafe(24)
    config = dataclasses.replace(
        stack_config(settings),
        secure_port=settings.secure_port,
        secure_users=(("omnistitch", password),),
    )
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    ca = settings.stack_dir / "kafka" / "tls" / "ca.pem"
    env_file.write_text(
        "\n".join(
            [
                f"OMNISTITCH_BOOTSTRAP_SERVERS={config.secure_bootstrap_servers}",
                "OMNISTITCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
                "OMNISTITCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
                "OMNISTITCH_KAFKA_SASL_USERNAME=omnistitch",
                f"OMNISTITCH_KAFKA_SASL_PASSWORD={password}",
                f"OMNISTITCH_KAFKA_SSL_CA_FILE={ca.resolve()}",
                "",
            ]
        )
    )
    env_file.chmod(0o600)
    return config, env_file


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    secure_env = None
    if getattr(args, "secure", False):
        config, secure_env = _secure_config(settings)
        stack = LocalStack(config)
    else:
        stack = LocalStack(stack_config(settings))
    if args.action == "up":
        elapsed = stack.up(report=_say)
        result = create_topics(
            settings.bootstrap_servers,
            settings.topic_prefix,
            settings.partitions,
            settings.replication_factor,
        )
        for name, state in result.items():
            _say(f"topic {name}: {state}")
        from pipeline.serialization import RegistrySerde

        registered = RegistrySerde(stack.config.registry_url).register(settings.topic_prefix)
        _say(f"schemas registered: {len(registered)} subjects (BACKWARD)")
        _say(
            f"stack up in {elapsed:.1f}s: Kafka {KAFKA_VERSION} on {settings.bootstrap_servers}, "
            f"Apicurio Registry {REGISTRY_VERSION} on {stack.config.registry_url}"
        )
        if secure_env is not None:
            _say(f"SASL_SSL client settings (secrets, owner-only): set -a; . {secure_env}")
    elif args.action == "down":
        stack.down(report=_say)
    elif args.action == "status":
        running = 0
        for status in stack.status():
            state = "ready" if status.ready else ("starting" if status.pids else "stopped")
            pids = ",".join(map(str, status.pids)) or "-"
            _say(f"{status.name:<9} {state:<9} pid={pids:<8} {status.endpoint}")
            running += bool(status.pids)
        if stack.kafka.ready():
            from confluent_kafka.admin import AdminClient

            admin = AdminClient(settings.kafka_security().librdkafka())
            topics = admin.list_topics(timeout=5).topics
            for spec in ALL_TOPICS:
                name = spec.name(settings.topic_prefix)
                parts = len(topics[name].partitions) if name in topics else 0
                _say(f"topic {name:<40} {'partitions=' + str(parts) if parts else 'missing'}")
        return 0 if running == len(stack.nodes) or args.allow_stopped else 3
    elif args.action == "logs":
        for node in stack.nodes:
            _say(f"==> {node.log_file} <==")
            _say(node.tail(args.lines))
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "create":
        result = create_topics(
            settings.kafka_security(),
            settings.topic_prefix,
            settings.partitions,
            settings.replication_factor,
            dead_letter_retention_ms=int(settings.dead_letter_retention_days * 86_400_000),
        )
        for name, state in result.items():
            _say(f"topic {name}: {state}")
    elif args.action == "purge-dead-letters":
        from datetime import datetime

        from pipeline.topics import DEAD_LETTERS, purge_before

        before = datetime.fromisoformat(args.before) if args.before else None
        topic = DEAD_LETTERS.name(settings.topic_prefix)
        cut = int(before.timestamp() * 1000) if before else None
        deleted = purge_before(settings.kafka_security(), topic, cut)
        _say(f"{topic}: {sum(deleted.values())} dead letters deleted")
    else:
        for spec in ALL_TOPICS:
            parts = spec.partitions(settings.partitions)
            policy = spec.config.get("cleanup.policy", "delete")
            _say(
                f"{spec.name(settings.topic_prefix):<40} partitions={parts:<3} "
                f"cleanup.policy={policy:<8} key={spec.key:<12} {spec.doc}"
            )
    return 0


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline import schemas

    if args.action == "check":
        problems = schemas.backward_problems()
        released = sorted(p.name for p in schemas.released_dir().glob("*.avsc"))
        for name, found in problems.items():
            for problem in found:
                print(f"INCOMPATIBLE {name}: {problem}", file=sys.stderr)
        if problems:
            print(
                f"{len(problems)} schema(s) not BACKWARD compatible with their released version; "
                "add defaults / make new fields optional, or release a new major version",
                file=sys.stderr,
            )
            return 1
        _say(f"{len(released)} released schema(s) checked: all BACKWARD compatible")
    elif args.action == "release":
        for path in schemas.release():
            _say(f"released {path}")
    else:
        from pipeline.serialization import RegistrySerde

        access = settings.registry_access()
        registered = RegistrySerde.from_access(access).register(settings.topic_prefix)
        for subject, schema_id in registered.items():
            _say(f"subject {subject}: schema id {schema_id} (BACKWARD)")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.serialization import RegistrySerde
    from pipeline.supervisor import supervise

    if args.model:
        from pathlib import Path

        settings = settings.model_copy(update={"match_model": Path(args.model)})
        settings.stitch_config()  # fail now on an unreadable model, not inside the worker
        os.environ["OMNISTITCH_MATCH_MODEL"] = str(settings.match_model)
    _logging(settings, configure=False)
    check_kafka(settings.kafka_security())
    RegistrySerde.from_access(settings.registry_access()).register(settings.topic_prefix)
    return supervise(settings.stages())


def cmd_stage(args: argparse.Namespace, settings: Settings) -> int:
    """One stage of the worker (``omnistitch worker`` starts one process per stage)."""
    from pipeline.supervisor import stop_when_orphaned

    stage = getattr(args, "stage", "intake")
    garbage.tune()
    if stage == "intake":
        from pipeline.intake_loop import run_intake

        _logging(settings)
        run_intake(settings, parent=args.parent or 0)
        return 0
    import faust

    from pipeline.app import build_app

    _logging(settings, configure=False)
    if args.parent:
        stop_when_orphaned(args.parent)
    app = build_app(settings, stage=stage)
    faust.Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    return 0


def cmd_collector(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.collector import serve

    _logging(settings)
    serve(settings)
    return 0


def cmd_files(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from connectors.files import run_files

    _logging(settings)
    totals = run_files(settings, once=args.once, drop_dir=Path(args.dir) if args.dir else None)
    _say(f"files: {totals['rows']} events and {totals['dead_letters']} dead letters delivered")
    return 0


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from connectors.generator import generate, send, write_jsonl

    if not args.output and not args.send:
        raise ConfigurationError("generate: give --output FILE.jsonl, --send, or both")
    scenario = generate(args.customers, args.seed, corruption=args.corruption)
    if args.output:
        count = write_jsonl(scenario, Path(args.output))
        _say(f"generate: {count} events of {args.customers} customers written to {args.output}")
    if args.send:
        url = args.collector_url or f"http://{settings.collector_host}:{settings.collector_port}"
        key = args.write_key or next(iter(settings.write_keys), None)
        if not key:
            raise ConfigurationError("generate --send: set OMNISTITCH_WRITE_KEYS or --write-key")
        report = send(scenario, url, key, settings.drop_dir)
        _say(f"generate: sent {report.render()}")
    return 0


def _logging(settings: Settings, configure: bool = True) -> None:
    """Scrub personal data and secrets from every log record (pipeline.redaction); warn about
    OMNISTITCH_* variables no setting reads. ``configure=False``: faust sets up handlers."""
    import logging
    import os

    from pipeline import redaction
    from pipeline.settings import unknown_variables

    redaction.install(settings.secrets())
    if configure:
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    unknown = unknown_variables(os.environ)
    if unknown:
        logging.getLogger("omnistitch.settings").warning(
            "ignored: no setting reads %s (a typo?)", ", ".join(unknown)
        )
    # The registry client logs every request (and Apicurio's 404 on "associations") at INFO.
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _stitch_config(args: argparse.Namespace, settings: Settings) -> Any:
    """Settings changed by --model and --no-probabilistic."""
    from pathlib import Path

    updates: dict[str, Any] = {}
    if getattr(args, "model", None):
        updates["match_model"] = Path(args.model)
    if getattr(args, "no_probabilistic", False):
        updates["probabilistic"] = False
    return settings.model_copy(update=updates).stitch_config()


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    import io
    import json
    from pathlib import Path

    from pipeline import evaluation
    from pipeline.contract import IdentityChange
    from pipeline.graph import merge_forwarding, new_customer_id
    from pipeline.replay import replay
    from pipeline.stitcher import Stitcher

    path = Path(args.input)
    truth: dict[str, str] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
                truth[record["event_id"]] = record["properties"][args.truth_property]
            except (ValueError, KeyError, TypeError):
                continue  # replay names unreadable lines; events without truth are not scored
    if not truth:
        raise ConfigurationError(f"no event of {path} has properties.{args.truth_property}")
    config = _stitch_config(args, settings)
    changes_out = io.StringIO()
    report: list[str] = []

    def inspect(stitcher: Stitcher) -> None:
        predicted = {e: c for e in truth if (c := stitcher.customer_of_event(e)) is not None}
        result = evaluation.evaluate(predicted, truth, worst=args.worst)
        report.append(result.render())
        changes = [IdentityChange.from_json(x) for x in changes_out.getvalue().splitlines()]
        final = merge_forwarding(changes)
        creator = {new_customer_id(e): t for e, t in truth.items()}
        report.append(f"\nworst false merges ({len(result.false_merges)} shown):")
        for cluster, people in result.false_merges:
            report.append(f"  {cluster}: records of {dict(people.most_common(4))}")
            members = {c for c in creator if final(c) == cluster}
            wrong = evaluation.merges_between_truths(changes, members.__contains__, creator.get)
            for change in wrong[:3]:
                report.append(
                    f"    merge {change.old_customer_ids[0]} → {change.customer_id}: "
                    f"{evaluation.describe_change(change)}"
                )
            if not wrong:
                report.append(
                    "    (no merge joined them: events carried identifiers of both people, "
                    "e.g. a shared device)"
                )
        report.append(f"\nworst missed links ({len(result.missed_links)} shown):")
        matcher = stitcher.graph.matcher
        for person, parts in result.missed_links:
            (a, na), (b, nb) = parts.most_common(2)
            line = f"  truth {person}: {len(parts)} customers, largest {a} ({na}), {b} ({nb})"
            if matcher is not None:
                fa, fb = matcher.features(a), matcher.features(b)
                if fa and fb:
                    score = matcher.config.model.score(fa, fb)
                    details = "; ".join(
                        f"{k}: {v}" for k, v in score.evidence().items() if "null" not in v
                    )
                    line += f"\n    p={score.match_probability:.4f} {details}"
                else:
                    line += "\n    no names, birth dates or addresses on both sides to compare"
            report.append(line)

    summary = replay(
        path, io.StringIO(), config, changes_out=changes_out, progress=False, inspect=inspect
    )
    print(summary.render(), file=sys.stderr)
    print("\n".join(report))
    return 0


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from pipeline.comparisons import Model, default_model
    from pipeline.training import read_events, records_of, train

    start = Model.load(Path(args.start)) if args.start else default_model()
    normaliser = settings.stitch_config().normaliser
    records = records_of(read_events(Path(args.input)), normaliser)
    report = train(
        records,
        start,
        random_pairs=args.random_pairs,
        max_block_size=settings.match_max_block_size,
        seed=args.seed,
    )
    report.model.save(Path(args.output))
    _say(report.render())
    _say(f"model written to {args.output}")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    garbage.tune()
    from contextlib import ExitStack
    from pathlib import Path

    from pipeline.replay import replay

    with ExitStack() as stack:

        def optional(path: str | None) -> Any:
            return stack.enter_context(Path(path).open("w", encoding="utf-8")) if path else None

        output = stack.enter_context(Path(args.output).open("w", encoding="utf-8"))
        summary = replay(
            Path(args.input),
            output,
            _stitch_config(args, settings),
            store=args.store,
            state_dir=Path(args.state_dir) if args.state_dir else None,
            profiles_out=optional(args.profiles),
            changes_out=optional(args.changes),
            journeys_out=optional(args.journeys),
        )
    print(summary.render(), file=sys.stderr)
    return 0


def _matching_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="match model JSON (omnistitch train); default built-in")
    parser.add_argument(
        "--no-probabilistic",
        action="store_true",
        help="deterministic stitching only (no matching on names, birth dates, addresses)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnistitch",
        description="Real-time identity stitching for omnichannel customer data. "
        "Settings come from OMNISTITCH_* environment variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="run the local Kafka + schema registry stack")
    stack.add_argument("action", choices=["up", "down", "status", "logs"])
    stack.add_argument("--lines", type=int, default=40, help="log lines to show (logs)")
    stack.add_argument(
        "--allow-stopped", action="store_true", help="status exits 0 even if stopped"
    )
    stack.add_argument(
        "--secure",
        action="store_true",
        help="up: also a SASL_SSL listener (SCRAM) on OMNISTITCH_SECURE_PORT, with a CA and a "
        "user of its own; the client settings are written to <stack dir>/secure.env",
    )
    stack.set_defaults(func=cmd_stack)

    topics = sub.add_parser(
        "topics", help="create or list the project's topics, purge dead letters"
    )
    topics.add_argument("action", choices=["create", "list", "purge-dead-letters"])
    topics.add_argument(
        "--before",
        help="purge-dead-letters: only those written before this ISO time (default: all)",
    )
    topics.set_defaults(func=cmd_topics)

    schemas = sub.add_parser("schemas", help="register schemas, check their compatibility")
    schemas.add_argument(
        "action",
        choices=["register", "check", "release"],
        help="register: topic value schemas into the registry (BACKWARD); check: fail if a "
        "schema cannot read data of its released version; release: snapshot the current ones",
    )
    schemas.set_defaults(func=cmd_schemas)

    replay = sub.add_parser(
        "replay", help="run the stitching engine in-process over a JSON-lines file (no Kafka)"
    )
    replay.add_argument("input", help="ChannelEvents, one JSON object per line")
    replay.add_argument("--output", required=True, help="one {event_id, customer_id} per line")
    replay.add_argument("--store", choices=["memory", "rocksdb"], default="memory")
    replay.add_argument("--state-dir", help="RocksDB folder for --store rocksdb")
    replay.add_argument("--profiles", help="also write the final CustomerProfiles (JSONL)")
    replay.add_argument("--changes", help="also write the IdentityChanges (JSONL)")
    replay.add_argument("--journeys", help="also write the JourneyEvents (JSONL)")
    _matching_arguments(replay)
    replay.set_defaults(func=cmd_replay)

    training = sub.add_parser(
        "train", help="estimate a match model (u by random sampling, m by EM) from events"
    )
    training.add_argument("input", help="ChannelEvents (JSONL); no labels are read")
    training.add_argument("--output", required=True, help="the model JSON to write")
    training.add_argument("--start", help="model to start from (default: the built-in one)")
    training.add_argument("--random-pairs", type=int, default=100_000)
    training.add_argument("--seed", type=int, default=1)
    training.set_defaults(func=cmd_train)

    evaluate = sub.add_parser(
        "eval", help="replay a file with ground truth and print precision, recall and F1"
    )
    evaluate.add_argument("input", help="ChannelEvents (JSONL) with a ground-truth property")
    evaluate.add_argument("--truth-property", default="truth_person_id")
    evaluate.add_argument("--worst", type=int, default=5, help="false merges / missed links shown")
    _matching_arguments(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    worker = sub.add_parser("worker", help="run the faust worker (intake, stitching)")
    worker.add_argument("--model", help="match model JSON (omnistitch train); default built-in")
    worker.set_defaults(func=cmd_worker)

    stage = sub.add_parser(
        "stage", help="run one stage of the worker (omnistitch worker starts one per stage)"
    )
    stage.add_argument("stage", choices=["intake", "link", "profile"])
    stage.add_argument("--parent", type=int, help="end when this process is gone")
    stage.set_defaults(func=cmd_stage)
    intake = sub.add_parser("intake", help="the same as `omnistitch stage intake`")
    intake.add_argument("--parent", type=int, help="end when this process is gone")
    intake.set_defaults(func=cmd_stage)

    collector = sub.add_parser(
        "collector", help="run the HTTP collector (Segment tracking API and webhooks)"
    )
    collector.set_defaults(func=cmd_collector)

    files = sub.add_parser("files", help="run the file connector on the drop folder (POS, CRM)")
    files.add_argument("--dir", help="the drop folder (default: OMNISTITCH_DROP_DIR)")
    files.add_argument("--once", action="store_true", help="deliver what is there, then stop")
    files.set_defaults(func=cmd_files)

    generate = sub.add_parser(
        "generate", help="synthetic omnichannel data with ground truth (file or connectors)"
    )
    generate.add_argument("--customers", type=int, default=1000)
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument(
        "--corruption",
        type=float,
        default=1.0,
        help="how often names are misspelt, nicknamed or transliterated (0: never, 1: default)",
    )
    generate.add_argument("--output", help="write ChannelEvents as JSON lines to this file")
    generate.add_argument(
        "--send",
        action="store_true",
        help="send through the real connectors: Segment calls and webhooks to the collector "
        "(OMNISTITCH_COLLECTOR_*), POS/CRM files into the drop folder",
    )
    generate.add_argument("--collector-url", help="default: http://<collector host>:<port>")
    generate.add_argument("--write-key", help="default: the first of OMNISTITCH_WRITE_KEYS")
    generate.set_defaults(func=cmd_generate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    try:
        return int(args.func(args, settings))
    except OmnistitchError as exc:
        print(f"omnistitch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
