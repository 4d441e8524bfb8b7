"""Key figures of omnichannel retail from customer histories (pure). Definitions, with their
formulas: docs/kpis.md. Every figure is computed from the journey events alone (and the merges
that tell which customer they belong to now), so a replay's output and the journeys topic give
the same numbers."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from pipeline.contract.models import ChannelEvent
from pipeline.insight.attribution import Attribution, attribute, touches_before
from pipeline.insight.histories import PICKUP_TYPE, Order, mix_of, orders_of

KNOWN_NAMESPACES = frozenset({"email", "phone", "customer_id", "loyalty_id"})
CONTACT_TYPES = frozenset({"chat_message", "call_completed", "message_received", "email_received"})
SOLVED_TYPE = "ticket_solved"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


@dataclass(frozen=True)
class Conversion:
    orders: int
    cross_channel_orders: int  # orders whose lookback touched >= 2 channels (order included)
    customers_by_mix: dict[str, int]  # channel mix of the whole history → customers
    buyers_by_mix: dict[str, int]  # ... → customers with at least one order

    @property
    def cross_channel_share(self) -> float:
        return self.cross_channel_orders / self.orders if self.orders else 0.0


@dataclass(frozen=True)
class ClickAndCollect:
    orders: int
    picked_up: int
    median_hours: float | None
    p90_hours: float | None


@dataclass(frozen=True)
class SupportEffort:
    cases: int
    solved: int
    mean_contacts: float | None  # contacts until solved, per solved case
    mean_channels: float | None  # distinct channels of those contacts
    one_contact_share: float | None  # solved cases solved with a single contact
    median_hours_to_solve: float | None  # from the first contact


@dataclass(frozen=True)
class Identification:
    anonymous_ids: int
    identified: int
    median_hours: float | None  # from the anonymous id's first event to the first known id

    @property
    def rate(self) -> float:
        return self.identified / self.anonymous_ids if self.anonymous_ids else 0.0


@dataclass(frozen=True)
class NetPromoter:
    responses: int
    score: float | None  # % promoters (9-10) - % detractors (0-6), over all responses
    by_mix: dict[str, tuple[int, float]]  # channel mix → (responses, NPS)


@dataclass(frozen=True)
class Report:
    customers: int
    events: int
    lookback_days: int
    conversion: Conversion
    switches: dict[tuple[str, str], int]
    attribution: Attribution
    click_and_collect: ClickAndCollect
    support: SupportEffort
    identification: Identification
    clv_by_first_channel: dict[str, Decimal]  # mean revenue to date per customer
    clv_by_mix: dict[str, Decimal]
    nps: NetPromoter
    accuracy: dict[str, float] = field(default_factory=dict)  # vs truth_person_id, if any

    def to_json(self) -> dict[str, Any]:
        def num(value: Decimal) -> float:
            return round(float(value), 4)

        return {
            "customers": self.customers,
            "events": self.events,
            "lookback_days": self.lookback_days,
            "cross_channel_conversion": {
                "orders": self.conversion.orders,
                "cross_channel_orders": self.conversion.cross_channel_orders,
                "share": round(self.conversion.cross_channel_share, 4),
                "conversion_rate_by_mix": {
                    mix: round(self.conversion.buyers_by_mix.get(mix, 0) / n, 4)
                    for mix, n in self.conversion.customers_by_mix.items()
                },
                "customers_by_mix": self.conversion.customers_by_mix,
            },
            "channel_switches": [
                {"from": a, "to": b, "count": n} for (a, b), n in sorted(self.switches.items())
            ],
            "attribution": {
                model: {
                    "orders": {c: num(v) for c, v in sorted(orders.items())},
                    "revenue": {
                        c: num(v) for c, v in sorted(self.attribution.revenue[model].items())
                    },
                }
                for model, orders in self.attribution.orders.items()
            },
            "click_and_collect": vars(self.click_and_collect),
            "support_effort": vars(self.support),
            "identification": {**vars(self.identification), "rate": self.identification.rate},
            "clv_by_first_channel": {
                c: num(v) for c, v in sorted(self.clv_by_first_channel.items())
            },
            "clv_by_mix": {m: num(v) for m, v in sorted(self.clv_by_mix.items())},
            "nps": {
                "responses": self.nps.responses,
                "score": self.nps.score,
                "by_mix": {
                    mix: {"responses": n, "score": value}
                    for mix, (n, value) in sorted(self.nps.by_mix.items())
                },
            },
            "stitching_accuracy": self.accuracy,
        }


def conversion(
    histories: Mapping[str, Sequence[ChannelEvent]],
    orders: Mapping[str, Sequence[Order]],
    lookback: timedelta,
) -> Conversion:
    cross = total = 0
    customers_by_mix: Counter[str] = Counter()
    buyers_by_mix: Counter[str] = Counter()
    for customer, events in histories.items():
        mix = mix_of(e.channel.value for e in events)
        customers_by_mix[mix] += 1
        buyers_by_mix[mix] += bool(orders[customer])
        for order in orders[customer]:
            total += 1
            channels = {e.channel.value for e in touches_before(order, events, lookback)}
            cross += len(channels | {order.channel}) >= 2
    return Conversion(total, cross, dict(customers_by_mix), dict(buyers_by_mix))


def switches(histories: Mapping[str, Sequence[ChannelEvent]]) -> dict[tuple[str, str], int]:
    """From → to counts over consecutive events of one customer in another channel."""
    found: Counter[tuple[str, str]] = Counter()
    for events in histories.values():
        for before, after in itertools.pairwise(events):
            if before.channel != after.channel:
                found[(before.channel.value, after.channel.value)] += 1
    return dict(found)


def click_and_collect(
    histories: Mapping[str, Sequence[ChannelEvent]], orders: Mapping[str, Sequence[Order]]
) -> ClickAndCollect:
    hours = []
    collect = 0
    for customer, events in histories.items():
        pickups = {
            e.properties.get("order_id"): e.occurred_at
            for e in events
            if e.event_type == PICKUP_TYPE
        }
        for order in orders[customer]:
            if not order.click_and_collect:
                continue
            collect += 1
            if order.key in pickups:
                hours.append(_hours(pickups[order.key] - order.at))
    p90 = statistics.quantiles(hours, n=10)[-1] if len(hours) >= 2 else None
    return ClickAndCollect(collect, len(hours), _median(hours), p90)


def support_effort(histories: Mapping[str, Sequence[ChannelEvent]]) -> SupportEffort:
    cases: dict[str, list[ChannelEvent]] = defaultdict(list)
    for events in histories.values():
        for event in events:
            ticket = event.properties.get("ticket_id")
            if ticket:
                cases[ticket].append(event)
    contacts, channels, hours = [], [], []
    for events in cases.values():
        solved = next((e for e in events if e.event_type == SOLVED_TYPE), None)
        if solved is None:
            continue
        before = [
            e
            for e in events
            if e.event_type in CONTACT_TYPES and e.occurred_at <= solved.occurred_at
        ]
        if not before:
            continue
        contacts.append(len(before))
        channels.append(len({e.channel for e in before}))
        hours.append(_hours(solved.occurred_at - before[0].occurred_at))
    return SupportEffort(
        len(cases),
        len(contacts),
        statistics.fmean(contacts) if contacts else None,
        statistics.fmean(channels) if channels else None,
        sum(1 for n in contacts if n == 1) / len(contacts) if contacts else None,
        _median(hours),
    )


def identification(histories: Mapping[str, Sequence[ChannelEvent]]) -> Identification:
    total = identified = 0
    hours = []
    for events in histories.values():
        first_seen: dict[str, Any] = {}
        known_at = None
        for event in events:
            for identifier in event.identifiers:
                if identifier.namespace == "anonymous_id":
                    first_seen.setdefault(identifier.value, event.occurred_at)
                elif identifier.namespace in KNOWN_NAMESPACES and known_at is None:
                    known_at = event.occurred_at
        total += len(first_seen)
        if known_at is None:
            continue
        for seen in first_seen.values():
            identified += 1
            hours.append(max(0.0, _hours(known_at - seen)))
    return Identification(total, identified, _median(hours))


def lifetime_value(
    histories: Mapping[str, Sequence[ChannelEvent]], orders: Mapping[str, Sequence[Order]]
) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Mean revenue to date per customer, by first channel and by channel mix."""
    by_first: dict[str, list[Decimal]] = defaultdict(list)
    by_mix: dict[str, list[Decimal]] = defaultdict(list)
    for customer, events in histories.items():
        revenue = sum((o.amount for o in orders[customer]), Decimal(0))
        by_first[events[0].channel.value].append(revenue)
        by_mix[mix_of(e.channel.value for e in events)].append(revenue)

    def mean(groups: dict[str, list[Decimal]]) -> dict[str, Decimal]:
        return {k: sum(v, Decimal(0)) / len(v) for k, v in groups.items()}

    return mean(by_first), mean(by_mix)


SURVEY_TYPE = "survey_responded"


def _net_promoter(scores: Sequence[int]) -> float:
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return round(100 * (promoters - detractors) / len(scores), 2)


def net_promoter(histories: Mapping[str, Sequence[ChannelEvent]]) -> NetPromoter:
    """NPS over every survey response (0-10), and by the channel mix of the respondent's
    history without its survey responses (the survey's own channel would blur the mix)."""
    everyone: list[int] = []
    by_mix: dict[str, list[int]] = defaultdict(list)
    for events in histories.values():
        scores = [
            int(e.properties["score"])
            for e in events
            if e.event_type == SURVEY_TYPE and e.properties.get("score", "").isdigit()
        ]
        if not scores:
            continue
        mix = mix_of(e.channel.value for e in events if e.event_type != SURVEY_TYPE)
        everyone += scores
        by_mix[mix] += scores
    return NetPromoter(
        len(everyone),
        _net_promoter(everyone) if everyone else None,
        {mix: (len(s), _net_promoter(s)) for mix, s in by_mix.items()},
    )


def report(
    histories: Mapping[str, Sequence[ChannelEvent]],
    lookback: timedelta = timedelta(days=30),
    accuracy: Mapping[str, float] | None = None,
) -> Report:
    orders = {customer: orders_of(customer, events) for customer, events in histories.items()}
    clv_first, clv_mix = lifetime_value(histories, orders)
    return Report(
        customers=len(histories),
        events=sum(len(events) for events in histories.values()),
        lookback_days=lookback.days,
        conversion=conversion(histories, orders, lookback),
        switches=switches(histories),
        attribution=attribute(orders, histories, lookback),
        click_and_collect=click_and_collect(histories, orders),
        support=support_effort(histories),
        identification=identification(histories),
        clv_by_first_channel=clv_first,
        clv_by_mix=clv_mix,
        nps=net_promoter(histories),
        accuracy=dict(accuracy or {}),
    )


def render(found: Report, top: int = 5) -> str:
    """The report as text: the headline figure of each KPI and its largest groups."""
    c, cc, s, i = found.conversion, found.click_and_collect, found.support, found.identification

    def fmt(value: float | None, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:,.2f}{unit}"

    lines = [
        f"{found.customers:,} customers, {found.events:,} events, lookback {found.lookback_days} "
        "days",
        f"cross-channel conversion: {c.cross_channel_orders:,} of {c.orders:,} orders touched "
        f"2+ channels ({c.cross_channel_share:.1%})",
        "  conversion rate by channel mix (largest mixes):",
    ]
    for mix, n in sorted(c.customers_by_mix.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {mix:<40} {c.buyers_by_mix.get(mix, 0) / n:>6.1%} of {n:,}")
    lines.append("  channel switches (most frequent):")
    for (a, b), n in sorted(found.switches.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {a} → {b}: {n:,}")
    lines.append("  attribution of revenue by model:")
    for model, revenue in found.attribution.revenue.items():
        best = sorted(revenue.items(), key=lambda kv: -kv[1])[:top]
        lines.append(f"    {model:<15} " + ", ".join(f"{ch} {float(v):,.0f}" for ch, v in best))
    lines += [
        f"click & collect: {cc.picked_up:,} of {cc.orders:,} picked up; order → pickup median "
        f"{fmt(cc.median_hours, ' h')}, p90 {fmt(cc.p90_hours, ' h')}",
        f"support effort: {s.solved:,} of {s.cases:,} cases solved; contacts per case "
        f"{fmt(s.mean_contacts)}, channels {fmt(s.mean_channels)}, solved at first contact "
        f"{fmt(None if s.one_contact_share is None else 100 * s.one_contact_share, ' %')}, "
        f"median {fmt(s.median_hours_to_solve, ' h')} to solve",
        f"identification: {i.identified:,} of {i.anonymous_ids:,} anonymous ids identified "
        f"({i.rate:.1%}), median {fmt(i.median_hours, ' h')} after first seen",
        "customer lifetime value (mean revenue to date) by first channel: "
        + ", ".join(
            f"{ch} {float(v):,.2f}"
            for ch, v in sorted(found.clv_by_first_channel.items(), key=lambda kv: -kv[1])[:top]
        ),
    ]
    nps = found.nps
    if nps.responses:
        largest = sorted(nps.by_mix.items(), key=lambda kv: -kv[1][0])[:top]
        lines.append(
            f"NPS: {nps.score:+.1f} over {nps.responses:,} responses; by channel mix: "
            + ", ".join(f"{mix} {value:+.1f} ({n})" for mix, (n, value) in largest)
        )
    if found.accuracy:
        scores = found.accuracy
        lines.append(
            f"stitching accuracy vs truth_person_id: pairwise precision "
            f"{scores['precision']:.4f}, recall {scores['recall']:.4f}, F1 {scores['f1']:.4f}"
        )
    return "\n".join(lines)
