"""`make bench-accuracy`: stitching accuracy against ground truth, next to Splink, in one run.

For each corruption level of the generator (how often names are misspelt, nicknamed or
transliterated), on the very same events:

1. deterministic stitching only: pairwise F1, B-cubed F1, events/s;
2. with probabilistic matching, the built-in default model: F1 and events/s (and the ratio to
   the deterministic throughput);
3. with a model trained on these events (`omnistitch train`: u by random sampling, m by EM, no
   labels): F1;
4. Splink (DuckDB backend) as the reference: the same events as records, the same normalised
   identifiers (as an array compared by intersection and used for blocking) and the same person
   attributes; u by random sampling, m by EM, clustered at the same 0.95 match probability
   as our auto-link threshold; F1 and seconds.

Scores are over events: two events are a true pair when they carry the same truth_person_id.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.synthetic.generator import generate, map_touches
from pipeline.contract.models import ChannelEvent
from pipeline.engine.comparisons import Model, default_model
from pipeline.engine.identifiers import Normaliser
from pipeline.engine.matching import MatchConfig
from pipeline.engine.names import fold, street_key
from pipeline.engine.state import MemoryStore
from pipeline.engine.stitcher import StitchConfig, Stitcher
from pipeline.quality.evaluation import b_cubed, pairwise
from pipeline.quality.training import records_of, train

ANCHOR = datetime(2026, 11, 24, tzinfo=UTC)
# Deterministic linking inside Splink: a shared normalised identifier is decisive (fixed m and u,
# kept through training), not sharing one says nothing (weight 0) - as in omnistitch.
SHARED_IDENTIFIER: dict[str, Any] = {
    "output_column_name": "ids",
    "comparison_levels": [
        {
            "sql_condition": "ids_l IS NULL OR ids_r IS NULL OR len(ids_l) = 0 OR len(ids_r) = 0",
            "label_for_charts": "no identifiers",
            "is_null_level": True,
        },
        {
            "sql_condition": "len(list_intersect(ids_l, ids_r)) >= 1",
            "label_for_charts": "share an identifier",
            "m_probability": 0.5,
            "u_probability": 1e-9,
            "fix_m_probability": True,
            "fix_u_probability": True,
        },
        {
            "sql_condition": "ELSE",
            "label_for_charts": "share none",
            "m_probability": 0.5,
            "u_probability": 0.5,
            "fix_m_probability": True,
            "fix_u_probability": True,
        },
    ],
}
THRESHOLD = 0.95


@dataclass(frozen=True)
class Result:
    pairwise_f1: float
    b_cubed_f1: float
    seconds: float
    events: int

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _score(predicted: dict[str, str], truth: dict[str, str], seconds: float) -> Result:
    return Result(pairwise(predicted, truth).f1, b_cubed(predicted, truth).f1, seconds, len(truth))


def stitch(events: Sequence[ChannelEvent], truth: dict[str, str], model: Model | None) -> Result:
    config = StitchConfig(matching=MatchConfig(model) if model is not None else None)
    stitcher = Stitcher(MemoryStore(), MemoryStore(), config, lambda: ANCHOR, emit_outputs=False)
    started = time.perf_counter()
    for event in events:
        stitcher.process(event)
    seconds = time.perf_counter() - started
    predicted = {e: c for e in truth if (c := stitcher.customer_of_event(e)) is not None}
    return _score(predicted, truth, seconds)


def splink_records(events: Sequence[ChannelEvent]) -> list[dict[str, Any]]:
    normaliser = Normaliser()
    rows = []
    for event in events:
        nodes, _dropped = normaliser.nodes(event.identifiers, event.traits)
        t = event.traits

        def folded(value: str | None) -> str | None:
            return fold(value, german=True) or None if value else None

        rows.append(
            {
                "unique_id": event.event_id,
                "ids": sorted(node.key for node in nodes),
                "first_name": folded(t.first_name),
                "last_name": folded(t.last_name),
                "birth_date": t.birth_date if t.birth_date and len(t.birth_date) == 10 else None,
                "street": f"{street_key(t.street)} {t.house_number or ''}".strip()
                if t.street
                else None,
                "postal_code": (t.postal_code or "").strip() or None,
                "city": folded(t.city),
            }
        )
    return rows


def splink(events: Sequence[ChannelEvent], truth: dict[str, str]) -> Result:
    import pyarrow as pa
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.WARNING)
    started = time.perf_counter()
    db_api = DuckDBAPI()
    table = db_api.register(pa.Table.from_pylist(splink_records(events)))
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            SHARED_IDENTIFIER,
            cl.NameComparison("first_name"),
            cl.NameComparison("last_name"),
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.JaroWinklerAtThresholds("street", [0.9]),
            cl.ExactMatch("postal_code"),
            cl.ExactMatch("city"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("ids", arrays_to_explode=["ids"]),
            block_on("birth_date"),
            block_on("last_name", "substr(birth_date, 1, 4)"),
            block_on("postal_code", "substr(first_name, 1, 1)"),
            block_on("first_name", "last_name"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(table, settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("ids", arrays_to_explode=["ids"])], recall=0.8
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    for rule in (
        block_on("birth_date"),
        block_on("first_name", "last_name"),
        block_on("postal_code", "substr(first_name, 1, 1)"),
    ):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    pairs = linker.inference.predict(threshold_match_probability=THRESHOLD)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pairs, threshold_match_probability=THRESHOLD
    )
    predicted = {str(row["unique_id"]): str(row["cluster_id"]) for row in clusters.as_record_list()}
    seconds = time.perf_counter() - started
    return _score(predicted, truth, seconds)


def level_report(customers: int, seed: int, corruption: float, run_splink: bool) -> list[str]:
    scenario = generate(customers, seed, anchor=ANCHOR, corruption=corruption)
    unique: dict[str, ChannelEvent] = {}
    for event in map_touches(scenario).events:
        unique.setdefault(event.event_id, event)
    events = list(unique.values())
    random.Random(seed).shuffle(events)  # noqa: S311 - arrival order is not the generator's
    truth = {e.event_id: e.properties["truth_person_id"] for e in events}

    deterministic = stitch(events, truth, None)
    default = stitch(events, truth, default_model())
    trained_at = time.perf_counter()
    report = train(records_of(events, Normaliser()), default_model())
    training_s = time.perf_counter() - trained_at
    trained = stitch(events, truth, report.model)
    reference = splink(events, truth) if run_splink else None

    def row(name: str, result: Result, extra: str = "") -> str:
        return (
            f"  {name:<26} pairwise F1 {result.pairwise_f1:.4f}  B-cubed F1 "
            f"{result.b_cubed_f1:.4f}  {result.per_second:>9,.0f} events/s "
            f"({result.seconds:.1f}s) {extra}"
        )

    ratio = default.per_second / deterministic.per_second
    lines = [
        f"corruption {corruption}: {len(events)} events of {customers} customers",
        row("deterministic only", deterministic),
        row("probabilistic, default", default, f"(x{ratio:.2f} of deterministic)"),
        row("probabilistic, trained", trained, f"(training {training_s:.1f}s)"),
    ]
    if reference is not None:
        lines.append(
            f"  {'Splink 5 (DuckDB)':<26} pairwise F1 {reference.pairwise_f1:.4f}  B-cubed F1 "
            f"{reference.b_cubed_f1:.4f}  {reference.seconds:>8.1f}s in all"
        )
        best = max(default.pairwise_f1, trained.pairwise_f1)
        gap_default = default.pairwise_f1 - reference.pairwise_f1
        gap_trained = trained.pairwise_f1 - reference.pairwise_f1
        met = "met" if best >= reference.pairwise_f1 - 0.005 else "NOT met"
        lines.append(
            f"  gap to Splink (pairwise F1): default {gap_default:+.4f}, trained "
            f"{gap_trained:+.4f}; target (best >= Splink - 0.005): {met}"
        )
    lines.append(
        "  throughput target (probabilistic >= 0.2x deterministic): "
        + ("met" if ratio >= 0.2 else "NOT met")
    )
    return lines


def main(argv: Sequence[str] | None = None, say: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--levels", default="0.5,1,2", help="corruption levels, comma separated")
    parser.add_argument("--no-splink", action="store_true", help="skip the Splink reference")
    args = parser.parse_args(argv)
    for level in (float(x) for x in args.levels.split(",")):
        for line in level_report(args.customers, args.seed, level, not args.no_splink):
            say(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
