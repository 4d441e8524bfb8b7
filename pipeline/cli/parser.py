"""The ``omnistitch`` command line: its parser and entry point; the commands live in the
modules of this package, one per group (stack, stitching, connectors)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli.connectors import (
    cmd_activate,
    cmd_collector,
    cmd_export,
    cmd_files,
    cmd_generate,
    cmd_serve,
)
from pipeline.cli.operating import (
    add_operation_arguments,
    cmd_erase,
    cmd_junk,
    cmd_link,
    cmd_remove,
    cmd_review,
    cmd_split,
    cmd_unlink,
)
from pipeline.cli.stack import cmd_schemas, cmd_stack, cmd_tail, cmd_topics, cmd_vault
from pipeline.cli.stitching import (
    cmd_eval,
    cmd_explain,
    cmd_kpis,
    cmd_replay,
    cmd_stage,
    cmd_train,
    cmd_worker,
)
from pipeline.exceptions import OmnistitchError
from pipeline.settings import Settings


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

    tail = sub.add_parser(
        "tail",
        help="print a topic's messages as JSON lines, Avro decoded through the schema registry",
    )
    tail.add_argument("topic", help="the full topic name, e.g. omnistitch.journeys.v1")
    tail.add_argument(
        "--last", type=int, default=0, help="only the last N messages of each partition (0: all)"
    )
    tail.add_argument("--headers", action="store_true", help="also print headers (base64)")
    tail.set_defaults(func=cmd_tail)

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

    explaining = sub.add_parser(
        "explain",
        help="why two identifiers (or a customer and an identifier) belong to one customer: the "
        "path of evidence, from the running worker, or from a replay's --state-dir",
    )
    explaining.add_argument(
        "left", help="an identifier NAMESPACE:VALUE (normalised as stitched) or a customer id"
    )
    explaining.add_argument("right", help="another identifier, NAMESPACE:VALUE")
    explaining.add_argument(
        "--state-dir", help="the graph state a replay kept (default: ask the running worker)"
    )
    explaining.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the worker's answer"
    )
    explaining.add_argument("--json", action="store_true", help="print JSON instead of text")
    explaining.set_defaults(func=cmd_explain)

    linking = sub.add_parser(
        "link",
        help="tell the running worker that two customers or identifiers are one person (a "
        "merge with your evidence), and wait for the result",
    )
    add_operation_arguments(linking)
    linking.set_defaults(func=cmd_link)
    review = sub.add_parser(
        "review",
        help="decide a possible match in the running worker: accept (merge) or reject (the two "
        "customers never link)",
    )
    review.add_argument("decision", choices=["accept", "reject"])
    add_operation_arguments(review)
    review.set_defaults(func=cmd_review)
    unlinking = sub.add_parser(
        "unlink",
        help="undo a wrong link in the running worker: remove the evidence joining two "
        "identifiers or customers (an edge `explain` shows); the parts never link again "
        "automatically",
    )
    add_operation_arguments(unlinking)
    unlinking.set_defaults(func=cmd_unlink)
    splitting = sub.add_parser(
        "split",
        help="remove everything one event or one source said from a customer in the running "
        "worker and recompute it into its connected parts",
    )
    add_operation_arguments(splitting, pair=False)
    what = splitting.add_mutually_exclusive_group(required=True)
    what.add_argument("--event", help="the event id whose evidence goes")
    what.add_argument(
        "--source", help="the source whose evidence goes (e.g. a shared tablet's app)"
    )
    splitting.set_defaults(func=cmd_split)
    junk = sub.add_parser(
        "junk",
        help="mark an identifier value junk after the fact (a shared store tablet, a till's "
        "default e-mail): it stops linking and the customers it held together are split",
    )
    add_operation_arguments(junk, pair=False)
    junk.set_defaults(func=cmd_junk)
    removing = sub.add_parser(
        "remove",
        help="take an identifier away from its customer (it is another person's): it becomes "
        "a customer of its own, never linked back automatically",
    )
    add_operation_arguments(removing, pair=False)
    removing.set_defaults(func=cmd_remove)
    erasing = sub.add_parser(
        "erase",
        help="erase a person (GDPR Art. 17) in the running worker: their identifiers, events "
        "and customer records leave the graph and the profiles; an event carrying one of their "
        "identifiers later is dropped (needs OMNISTITCH_ERASURE_KEY in the worker)",
    )
    whom = erasing.add_mutually_exclusive_group(required=True)
    whom.add_argument("--customer", help="the customer id (prefer it: no personal data sent)")
    whom.add_argument("--identifier", help="one of the person's identifiers, NAMESPACE:VALUE")
    add_operation_arguments(erasing, pair=False, positional=False)
    erasing.set_defaults(func=cmd_erase)

    kpis = sub.add_parser(
        "kpis",
        help="omnichannel KPIs (conversion, switches, attribution, click & collect, support, "
        "identification, CLV) from journey events (replay --journeys, or the journeys topic)",
    )
    kpis.add_argument("journeys", help="JourneyEvents, JSON lines")
    kpis.add_argument(
        "--changes", help="IdentityChanges (JSON lines): follow merges to today's customers"
    )
    kpis.add_argument("--lookback-days", type=int, default=30)
    kpis.add_argument("--json", action="store_true", help="print JSON instead of text")
    kpis.set_defaults(func=cmd_kpis)

    training = sub.add_parser(
        "train", help="estimate a match model (u by random sampling, m by EM) from events"
    )
    training.add_argument("input", help="ChannelEvents (JSONL); no labels are read")
    training.add_argument("--output", required=True, help="the model JSON to write")
    training.add_argument(
        "--start",
        help="the model in use: training starts from it and is compared with it "
        "(default: the built-in one)",
    )
    training.add_argument("--random-pairs", type=int, default=100_000)
    training.add_argument("--seed", type=int, default=1)
    training.add_argument(
        "--force",
        action="store_true",
        help="write the model even when it is expected to do worse than the one in use",
    )
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

    vault = sub.add_parser(
        "vault", help="run the key vault (crypto-shredding keys); `omnistitch stack up` starts one"
    )
    vault.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    vault.add_argument("--port", type=int, help="port (default OMNISTITCH_VAULT_PORT, 8200)")
    vault.add_argument("--data", help="RocksDB folder of the keys (default <stack dir>/vault/keys)")
    vault.add_argument("marker", nargs="?", help=argparse.SUPPRESS)  # the stack's process marker
    vault.set_defaults(func=cmd_vault)

    collector = sub.add_parser(
        "collector", help="run the HTTP collector (Segment tracking API and webhooks)"
    )
    collector.set_defaults(func=cmd_collector)

    serving = sub.add_parser(
        "serve", help="run the profile API and viewer on OMNISTITCH_SERVE_HOST:PORT (8300)"
    )
    serving.add_argument(
        "--catch-up",
        type=float,
        default=0.0,
        help="seconds to wait for the view to reach the topics' ends before answering",
    )
    serving.set_defaults(func=cmd_serve)

    activating = sub.add_parser(
        "activate", help="evaluate audiences on the profiles topic (docs/audiences.md)"
    )
    activating.add_argument("--audiences", help="definitions file (OMNISTITCH_AUDIENCES_FILE)")
    activating.add_argument(
        "--destinations", help="webhook destinations file (OMNISTITCH_DESTINATIONS_FILE)"
    )
    activating.set_defaults(func=cmd_activate)

    exporting = sub.add_parser(
        "export", help="an audience's members as a hashed file for an ad platform"
    )
    exporting.add_argument("--audience", required=True, help="the audience id")
    exporting.add_argument("--platform", required=True, choices=["google", "meta"])
    exporting.add_argument("--output", required=True, help="CSV file to write (mode 0600)")
    exporting.set_defaults(func=cmd_export)

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
