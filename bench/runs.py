"""Runs shared by the accuracy benchmarks: stitch events in one process and score the result
against the truth (pairwise precision, recall and F1 over events; B-cubed F1)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pipeline.contract.models import ChannelEvent
from pipeline.engine.comparisons import Model
from pipeline.engine.features import features_of
from pipeline.engine.identifiers import Normaliser
from pipeline.engine.matching import PERSON_ATTRIBUTES, MatchConfig, blocking_keys
from pipeline.engine.state import MemoryStore
from pipeline.engine.stitcher import StitchConfig, Stitcher
from pipeline.quality.evaluation import Scores, b_cubed, pairwise

ANCHOR = datetime(2026, 11, 24, tzinfo=UTC)
SPLINK_THRESHOLD = 0.95


@dataclass(frozen=True)
class Result:
    pairwise: Scores
    b_cubed_f1: float
    seconds: float
    events: int
    matcher: Mapping[str, int] = field(default_factory=dict)  # the matcher's counters

    @property
    def pairwise_f1(self) -> float:
        return self.pairwise.f1

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def prf(self) -> str:
        p = self.pairwise
        return f"P {p.precision:.4f}  R {p.recall:.4f}  F1 {p.f1:.4f}"


def result_of(predicted: dict[str, str], truth: dict[str, str], seconds: float) -> Result:
    return Result(pairwise(predicted, truth), b_cubed(predicted, truth).f1, seconds, len(truth))


def stitch(events: Sequence[ChannelEvent], truth: dict[str, str], model: Model | None) -> Result:
    config = StitchConfig(matching=MatchConfig(model) if model is not None else None)
    stitcher = Stitcher(MemoryStore(), MemoryStore(), config, lambda: ANCHOR, emit_outputs=False)
    started = time.perf_counter()
    for event in events:
        stitcher.process(event)
    seconds = time.perf_counter() - started
    predicted = {e: c for e in truth if (c := stitcher.customer_of_event(e)) is not None}
    found = result_of(predicted, truth, seconds)
    matcher = stitcher.graph.matcher
    return replace(found, matcher=dict(matcher.stats)) if matcher is not None else found


def pair_completeness(events: Sequence[ChannelEvent], truth: dict[str, str]) -> float:
    """The share of true pairs of records with person attributes that share at least one
    blocking key: the most any blocking of these keys can find directly."""
    normaliser = Normaliser()
    keys: dict[str, set[str]] = {}
    people: dict[str, list[str]] = defaultdict(list)
    for event in events:
        found = features_of(event.traits, normaliser.nodes(event.identifiers, event.traits)[0])
        if any(attribute in found for attribute in PERSON_ATTRIBUTES):
            keys[event.event_id] = set(blocking_keys(found))
            people[truth[event.event_id]].append(event.event_id)
    pairs = shared = 0
    for records in people.values():
        for i, left in enumerate(records):
            for right in records[i + 1 :]:
                pairs += 1
                shared += bool(keys[left] & keys[right])
    return shared / pairs if pairs else 1.0


def splink_people(events: Sequence[ChannelEvent], truth: dict[str, str]) -> Result:
    """Splink 5 (DuckDB) with its standard comparison library on the same records, as a user
    would configure it for person data: Jaro-Winkler on first name, surname, street and city;
    exact house number, postal code and region; DateOfBirthComparison. The prior from two
    deterministic rules, u by random sampling, m by EM on three blocking rules; pairs and
    clusters at 0.95."""
    import pyarrow as pa
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.WARNING)
    rows = [
        {
            "unique_id": e.event_id,
            "first_name": e.traits.first_name,
            "surname": e.traits.last_name,
            "dob": e.traits.birth_date
            if e.traits.birth_date and len(e.traits.birth_date) == 10
            else None,
            "street": e.traits.street,
            "house": e.traits.house_number,
            "postcode": e.traits.postal_code,
            "city": e.traits.city,
            "region": e.traits.region,
        }
        for e in events
    ]
    started = time.perf_counter()
    db_api = DuckDBAPI()
    table = db_api.register(pa.Table.from_pylist(rows))
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.JaroWinklerAtThresholds("first_name"),
            cl.JaroWinklerAtThresholds("surname"),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.JaroWinklerAtThresholds("street"),
            cl.ExactMatch("house"),
            cl.ExactMatch("postcode"),
            cl.JaroWinklerAtThresholds("city"),
            cl.ExactMatch("region"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("first_name"),
            block_on("surname"),
            block_on("dob"),
            block_on("postcode"),
            block_on("street"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(table, settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname"), block_on("dob", "postcode")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    for rule in (block_on("first_name", "surname"), block_on("dob"), block_on("postcode")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    return splink_result(linker, truth, started)


def splink_result(linker: Any, truth: dict[str, str], started: float) -> Result:
    """Predict pairs and cluster them at SPLINK_THRESHOLD; score against the truth, the time
    counted from ``started`` (Splink's set-up and training included)."""
    pairs = linker.inference.predict(threshold_match_probability=SPLINK_THRESHOLD)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pairs, threshold_match_probability=SPLINK_THRESHOLD
    )
    predicted = {str(row["unique_id"]): str(row["cluster_id"]) for row in clusters.as_record_list()}
    return result_of(predicted, truth, time.perf_counter() - started)
