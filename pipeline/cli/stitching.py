"""`omnistitch worker|stage|replay|eval|train`: the stitcher in the stream and over files, and
the quality of its match model."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from pipeline import garbage
from pipeline.cli.console import say, setup_logging
from pipeline.configuration import stitch_config
from pipeline.exceptions import ConfigurationError
from pipeline.settings import Settings
from pipeline.stream.transport import check_kafka

if TYPE_CHECKING:
    pass


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.stream.serialization import RegistrySerde
    from pipeline.stream.supervisor import supervise

    if args.model:
        from pathlib import Path

        settings = settings.model_copy(update={"match_model": Path(args.model)})
        stitch_config(settings)  # fail now on an unreadable model, not inside the worker
        os.environ["OMNISTITCH_MATCH_MODEL"] = str(settings.match_model)
    setup_logging(settings, configure=False)
    check_kafka(settings.kafka_security())
    RegistrySerde.from_access(settings.registry_access()).register(settings.topic_prefix)
    return supervise(
        settings.stages(), settings.metrics_port, settings.data_dir, settings.metrics_host
    )


def cmd_stage(args: argparse.Namespace, settings: Settings) -> int:
    """One stage of the worker (``omnistitch worker`` starts one process per stage)."""
    from pipeline.stream.supervisor import stop_when_orphaned

    stage = getattr(args, "stage", "intake")
    garbage.tune()
    if stage == "intake":
        from pipeline.stream.intake_loop import run_intake

        setup_logging(settings)
        run_intake(settings, parent=args.parent or 0)
        return 0
    import faust

    from pipeline.stream.app import build_app

    setup_logging(settings, configure=False)
    if args.parent:
        stop_when_orphaned(args.parent)
    app = build_app(settings, stage=stage)
    faust.Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    return 0


def _stitch_config(args: argparse.Namespace, settings: Settings) -> Any:
    """Settings changed by --model and --no-probabilistic."""
    from pathlib import Path

    updates: dict[str, Any] = {}
    if getattr(args, "model", None):
        updates["match_model"] = Path(args.model)
    if getattr(args, "no_probabilistic", False):
        updates["probabilistic"] = False
    return stitch_config(settings.model_copy(update=updates))


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    import io
    import json
    from pathlib import Path

    from pipeline.contract.models import IdentityChange
    from pipeline.engine.graph import merge_forwarding, new_customer_id
    from pipeline.engine.stitcher import Stitcher
    from pipeline.quality import evaluation
    from pipeline.replay.runner import replay

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

    from pipeline.engine.comparisons import Model
    from pipeline.engine.weights import default_model
    from pipeline.quality.appraisal import appraise
    from pipeline.quality.training import read_events, records_of, train

    start = Model.load(Path(args.start)) if args.start else default_model()
    config = stitch_config(settings)
    normaliser = config.normaliser
    records = records_of(read_events(Path(args.input)), normaliser)
    report = train(
        records,
        start,
        random_pairs=args.random_pairs,
        max_block_size=settings.match_max_block_size,
        seed=args.seed,
    )
    say(report.render())
    appraisal = appraise(records, start, report, settings.match_max_block_size)
    say(appraisal.render())
    if appraisal.worse and not args.force:
        say(f"model NOT written to {args.output}: keep the one in use, or pass --force")
        return 1
    report.model.save(Path(args.output))
    say(f"model written to {args.output}")
    return 0


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    import json
    from pathlib import Path

    from pipeline.engine.explanation import explain
    from pipeline.engine.identifiers import Node
    from pipeline.replay.stores import RocksDBStore

    if args.state_dir is None:  # the running worker's graph
        from pipeline.cli.operating import explain_live

        return explain_live(args, settings)
    graph_dir = Path(args.state_dir) / "graph"
    if not graph_dir.is_dir():
        say(f"no graph state in {args.state_dir}: run replay with --store rocksdb --state-dir")
        return 2
    config = stitch_config(settings)
    normaliser = config.normaliser
    nodes = []
    for raw in (args.left, args.right):
        found = normaliser.node_of(raw)
        if not isinstance(found, Node):
            why = found.value if found is not None else "expected NAMESPACE:VALUE"
            say(f"not an identifier: {raw.split(':', 1)[0]}:… ({why})")
            return 2
        nodes.append(found)
    store = RocksDBStore(graph_dir)
    try:
        found_path = explain(store, nodes[0], nodes[1], config.rules)
    finally:
        store.close()
    print(json.dumps(found_path.to_json(), indent=2) if args.json else found_path.render())
    return 0 if found_path.joined else 1


def cmd_kpis(args: argparse.Namespace, settings: Settings) -> int:
    import json
    from datetime import timedelta
    from pathlib import Path

    from pipeline.contract.models import IdentityChange
    from pipeline.engine.graph import merge_forwarding
    from pipeline.insight.histories import histories, read_journeys
    from pipeline.insight.kpis import render, report

    final = None
    try:
        if args.changes:
            with Path(args.changes).open(encoding="utf-8") as lines:
                final = merge_forwarding(
                    [
                        IdentityChange.model_validate(json.loads(line))
                        for line in lines
                        if line.strip()
                    ]
                )
        found = histories(read_journeys(Path(args.journeys)), final)
    except (OSError, ValueError) as exc:
        say(f"cannot read the input: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return 2
    from pipeline.quality.evaluation import stitching_accuracy

    result = report(found, timedelta(days=args.lookback_days), stitching_accuracy(found))
    print(json.dumps(result.to_json(), indent=2) if args.json else render(result))
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    garbage.tune()
    from contextlib import ExitStack
    from pathlib import Path

    from pipeline.replay.runner import replay

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
