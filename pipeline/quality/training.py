"""``omnistitch train``: estimate a match model from unlabelled events (pure), as Splink does.

1. Records: the person attributes of every event that carries a name or a birth date
   (normalised as the matcher sees them), identical records once.
2. u probabilities by random sampling: pairs of random records are almost all non-matches, so
   the share of such pairs in each comparison level estimates u.
3. m probabilities by expectation maximisation over the pairs that share a blocking key, with
   u fixed: the E-step gives every pair its match probability under the current model, the
   M-step sets each level's m to the probability-weighted share of pairs in it. A comparison's
   m is estimated only from pairs found through blocking keys that do not use its attribute
   (pairs blocked on a birth date say nothing about how often matching birth dates agree).
4. The prior: expected matches among blocked pairs over all pairs of records.

No labels are read: ``truth_person_id`` and every other property are ignored.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.contract.models import ChannelEvent
from pipeline.engine.comparisons import Comparison, ComparisonLevel, Model
from pipeline.engine.features import Features, features_of
from pipeline.engine.identifiers import Normaliser
from pipeline.engine.matching import PERSON_ATTRIBUTES, blocking_keys
from pipeline.exceptions import ConfigurationError, UnreadableInputError

# Which attributes each kind of blocking key uses.
KEY_ATTRIBUTES = {
    "bd": {"birth_date"},
    "ln": {"last_name", "birth_date"},
    "pc": {"address", "first_name"},
    "ph": {"address"},
    "sh": {"address"},
    "nm": {"first_name", "last_name"},
}
SMOOTHING = 0.5
MIN_PROBABILITY = 1e-6


@dataclass(frozen=True)
class TrainingReport:
    records: int
    random_pairs: int
    blocked_pairs: int
    iterations: int
    model: Model
    converged: bool = True

    def render(self) -> str:
        lines = [
            f"records: {self.records}, random pairs for u: {self.random_pairs}, "
            f"blocked pairs for m: {self.blocked_pairs}, EM iterations: {self.iterations}",
            f"probability_two_random_records_match: "
            f"{self.model.probability_two_random_records_match:.3g}",
            f"{'comparison':<12} {'level':<30} {'m':>8} {'u':>10} {'match_weight':>13}",
        ]
        for comparison in self.model.comparisons:
            for level in comparison.levels:
                lines.append(
                    f"{comparison.output_column_name:<12} {level.label:<30} "
                    f"{level.m_probability:>8.4f} {level.u_probability:>10.6f} "
                    f"{level.match_weight:>+13.2f}"
                )
        return "\n".join(lines)


def records_of(events: Iterable[ChannelEvent], normaliser: Normaliser) -> list[Features]:
    seen: set[str] = set()
    records: list[Features] = []
    for event in events:
        nodes, _dropped = normaliser.nodes(event.identifiers, event.traits)
        found = features_of(event.traits, nodes)
        if not any(a in found for a in PERSON_ATTRIBUTES):
            continue
        key = json.dumps(found, sort_keys=True)
        if key not in seen:
            seen.add(key)
            records.append(found)
    return records


def _vector(model: Model, a: Features, b: Features) -> tuple[int | None, ...]:
    return tuple(model.levels(a, b))


def blocked_pairs(
    records: Sequence[Features], max_block_size: int
) -> dict[tuple[int, int], set[str]]:
    """Pairs of records sharing a blocking key → the kinds of keys they share."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        for key in blocking_keys(record):
            blocks[key].append(index)
    pairs: dict[tuple[int, int], set[str]] = defaultdict(set)
    for key, members in blocks.items():
        if len(members) > max_block_size:
            continue
        kind = key.split("|", 1)[0]
        for i, left in enumerate(members):
            for right in members[i + 1 :]:
                pairs[(left, right)].add(kind)
    return pairs


def _posterior(
    vector: Sequence[int | None],
    active: Sequence[int],
    m: Sequence[Sequence[float]],
    u: Sequence[Sequence[float]],
    lam: float,
) -> float:
    log_m, log_u = math.log(lam), math.log(1 - lam)
    for c in active:
        level = vector[c]
        if level is not None:
            log_m += math.log(max(m[c][level], MIN_PROBABILITY))
            log_u += math.log(max(u[c][level], MIN_PROBABILITY))
    top = max(log_m, log_u)
    return math.exp(log_m - top) / (math.exp(log_m - top) + math.exp(log_u - top))


def _em(
    vectors: Sequence[Sequence[int | None]],
    active: Sequence[int],
    start: Model,
    u: Sequence[Sequence[float]],
    iterations: int,
) -> tuple[list[list[float]], float, int]:
    """EM with u fixed over the active comparisons: (m, lambda, iterations run)."""
    m = [[level.m_probability for level in c.levels] for c in start.comparisons]
    lam = 0.1
    rounds = 0
    for rounds in range(1, iterations + 1):  # noqa: B007 - the count is reported
        weights = [_posterior(v, active, m, u, lam) for v in vectors]
        new_m = [list(row) for row in m]
        for c in active:
            counts = [SMOOTHING * 1e-3] * len(m[c])
            for vector, p in zip(vectors, weights, strict=True):
                if vector[c] is not None:
                    counts[vector[c]] += p  # type: ignore[index]
            new_m[c] = [n / sum(counts) for n in counts]
        change = max(abs(a - b) for c in active for a, b in zip(new_m[c], m[c], strict=True))
        m = new_m
        lam = min(max(sum(weights) / len(weights), 1e-6), 1 - 1e-6)
        if change < 1e-5:
            break
    return m, lam, rounds


def train(
    records: Sequence[Features],
    start: Model,
    *,
    random_pairs: int = 100_000,
    max_block_size: int = 50,
    iterations: int = 25,
    seed: int = 1,
) -> TrainingReport:
    if len(records) < 10:
        raise ConfigurationError(
            f"training needs at least 10 records with names; got {len(records)}"
        )
    rnd = random.Random(seed)  # noqa: S311 - sampling, not security
    comparisons = start.comparisons

    # u: random pairs.
    u_counts = [[SMOOTHING] * len(c.levels) for c in comparisons]
    for _ in range(random_pairs):
        i, j = rnd.randrange(len(records)), rnd.randrange(len(records))
        if i == j:
            continue
        for c, level in enumerate(_vector(start, records[i], records[j])):
            if level is not None:
                u_counts[c][level] += 1
    u = [[n / sum(row) for n in row] for row in u_counts]

    # m: one EM session per kind of blocking key, as Splink does: the comparisons a key is
    # built from are left out of that session (its pairs agree on them by construction).
    pairs = blocked_pairs(records, max_block_size)
    vectors = [(_vector(start, records[i], records[j]), kinds) for (i, j), kinds in pairs.items()]
    estimates: list[list[list[float]]] = [[[] for _ in c.levels] for c in comparisons]
    sessions: list[float] = []
    done = 0
    for kind, used in KEY_ATTRIBUTES.items():
        active = [c for c, comp in enumerate(comparisons) if comp.output_column_name not in used]
        session = [vector for vector, kinds in vectors if kind in kinds]
        if not session:
            continue
        m_session, lam, rounds = _em(session, active, start, u, iterations)
        done = max(done, rounds)
        sessions.append(lam)
        for c in active:
            for level, value in enumerate(m_session[c]):
                estimates[c][level].append(value)
    m = [
        [
            sum(values) / len(values) if values else level.m_probability
            for level, values in zip(comp.levels, estimates[c], strict=True)
        ]
        for c, comp in enumerate(comparisons)
    ]
    m = [[value / sum(row) for value in row] for row in m]
    # The prior: expected matches among all blocked pairs under the final m and u, over all
    # pairs of records.
    lam = sum(sessions) / len(sessions) if sessions else 0.5
    everyone = list(range(len(comparisons)))
    expected_matches = sum(_posterior(v, everyone, m, u, lam) for v, _kinds in vectors)
    total_pairs = len(records) * (len(records) - 1) / 2
    prior = min(max(expected_matches / total_pairs, 1e-9), 0.5)
    model = start.replace(
        probability_two_random_records_match=prior,
        comparisons=tuple(
            Comparison(
                c.output_column_name,
                tuple(
                    ComparisonLevel(
                        level.label,
                        level.predicate,
                        round(max(m[ci][li], MIN_PROBABILITY), 8),
                        round(max(u[ci][li], MIN_PROBABILITY), 8),
                        level.parameters,
                        level.tf_adjustment,
                    )
                    for li, level in enumerate(c.levels)
                ),
            )
            for ci, c in enumerate(comparisons)
        ),
    )
    return TrainingReport(
        len(records), random_pairs, len(vectors), done, model, converged=done < iterations
    )


def read_events(path: Path) -> Iterable[ChannelEvent]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield ChannelEvent.from_json(line)
            except ValueError as exc:
                raise UnreadableInputError(f"{path}:{number}: not a ChannelEvent") from exc
