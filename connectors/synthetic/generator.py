"""Synthetic omnichannel data with ground truth: ``omnistitch generate``.

``generate`` draws people (connectors.synthetic.people) and what they do across a retailer's
channels, as the raw records each channel's system would send: Segment calls from the web shop
and the app, webhooks of the e-mail service, SMS/WhatsApp, Messenger, web chat, the call centre, the
helpdesk and the shop's orders and pickups, and rows of the store tills' (POS) and the CRM's
exports. The stories: anonymous browsing identified later, app logins, newsletters, store
purchases with a loyalty card, CRM records that differ slightly from the web sign-up (nicknames,
transliterations, typos, another e-mail, another phone format), people who moved, click &
collect (online order, pickup in store), support cases that start in chat and continue by phone
and e-mail, shared family devices, junk identifiers and webhooks delivered twice.

Every raw record carries the person's id as ``truth_person_id``; the connectors copy it into
``properties["truth_person_id"]``, which only evaluation reads, never stitching.

Two renderings of the same records: ``write_jsonl`` maps them with the connectors' own mappers
into ChannelEvents (the JSON-lines form that ``omnistitch replay`` reads), and ``send``
(connectors.synthetic.sending) pushes them through the real connectors (HTTP collector,
webhooks, file drops).

``synthetic_stream`` is the small, conflict-free generator of the stitching tests and benchmark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.files.mappings import DEFAULT_MAPPINGS, map_row
from connectors.http.segment import map_call
from connectors.http.webhooks import MAPPERS
from connectors.synthetic.commerce import CommerceEpisodes
from connectors.synthetic.people import make_person
from connectors.synthetic.service import ServiceEpisodes
from connectors.synthetic.timeline import SEGMENT_SOURCE, Scenario, Touch
from connectors.synthetic.web import WebEpisodes
from pipeline.contract.models import Channel, ChannelEvent, Identifier, Traits


class _Story(WebEpisodes, CommerceEpisodes, ServiceEpisodes):
    """One person's story: which episodes happen, in which order."""

    def tell(self) -> list[Touch]:
        p, rnd = self.person, self.rnd
        if rnd.random() < 0.8:
            self.browse_then_identify()
        if rnd.random() < 0.45 or p.shared_device:
            self.app()
        if p.customer_id:
            self.crm_record()
            if p.moved_to:
                self.crm_record(moved=True)
        if rnd.random() < 0.7:
            self.newsletter()
        if p.loyalty_id and rnd.random() < 0.8:
            self.loyalty_signup()
            self.store_visit()
        if rnd.random() < 0.3:
            self.order(click_and_collect=True)
        if rnd.random() < 0.25:
            self.order(click_and_collect=False)
        if rnd.random() < 0.15:
            self.support_case()
        if rnd.random() < 0.2 or p.messenger_psid:
            self.messages()
        if not self.touches:  # everybody leaves a trace somewhere
            self.newsletter()
        return self.touches


def generate(
    customers: int, seed: int, anchor: datetime | None = None, corruption: float = 1.0
) -> Scenario:
    """The raw records of ``customers`` people over the 60 days before ``anchor``.

    The same customers, seed and anchor give the same records; the anchor defaults to the start
    of today (UTC), so that every record lies inside the stitcher's accepted time window.
    """
    rnd = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed
    now = anchor or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = now - timedelta(days=60)
    used: set[str] = set()
    # CRM ids differ between seeds: populations generated into one stack stay apart.
    people = [make_person(rnd, pid, used, f"{seed % 10**5:05d}-") for pid in range(customers)]
    # Shared family devices: a tablet two people of one household log in on (a conflict).
    for a, b in zip(people[::37], people[1::37], strict=False):
        if b.customer_id and a.customer_id:
            a.shared_device = b.shared_device = f"tablet-{seed}-{a.pid}"
    scenario = Scenario(customers, seed, people)
    for person in people:
        begin = start + timedelta(seconds=rnd.uniform(0, 20 * 86400))
        story = _Story(rnd, seed, person, begin, corruption)
        scenario.touches.extend(t for t in story.tell() if t.at <= now)
    scenario.touches.sort(key=lambda t: t.at)
    return scenario


# -- rendering: the connectors' own mappers ----------------------------------------------------


@dataclass
class Mapped:
    events: list[ChannelEvent] = field(default_factory=list)
    rejected: int = 0


def map_touches(scenario: Scenario) -> Mapped:
    """Every touch through the mapper its connector uses: the events the connectors produce."""
    out = Mapped()
    for n, touch in enumerate(scenario.touches):
        received = touch.at + timedelta(seconds=2)
        if touch.connector == "segment":
            results = [map_call(touch.payload, source=SEGMENT_SOURCE, received_at=received)]
        elif touch.connector == "webhook":
            results = [r for _item, r in MAPPERS[touch.target](touch.payload, received)]
        else:
            results = [
                map_row(
                    touch.payload,
                    DEFAULT_MAPPINGS[touch.target],
                    file_id=f"{touch.target}:generated:{scenario.seed}",
                    line=n,
                    received_at=received,
                )
            ]
        for result in results:
            if isinstance(result, ChannelEvent):
                out.events.append(result)
            else:
                out.rejected += 1
    return out


def write_jsonl(scenario: Scenario, path: Path) -> int:
    """The scenario's ChannelEvents as JSON lines (``omnistitch replay``'s input)."""
    mapped = map_touches(scenario)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for event in mapped.events:
            fh.write(event.to_json() + "\n")
    return len(mapped.events)


def synthetic_stream(
    persons: int,
    events: int,
    seed: int = 7,
    duplicates: int = 0,
    start: datetime | None = None,
    span: timedelta = timedelta(days=3),
) -> list[ChannelEvent]:
    rnd = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed
    start = start or datetime.now(UTC) - span
    channels = [c for c in Channel if c is not Channel.unknown]
    out = []
    for n in range(events):
        p = rnd.randrange(persons)
        spelled = rnd.choice(
            [f"Person.{p}@Example.de", f" person.{p}@example.de", f"PERSON.{p}@EXAMPLE.DE"]
        )
        phone = rnd.choice(
            [f"0170 {1_000_000 + p}", f"+49 170 {1_000_000 + p}", f"0049170{1_000_000 + p}"]
        )
        pool = [
            ("anonymous_id", f"anon-{p}-{rnd.randrange(3)}"),
            ("device_id", f"dev-{p}-{rnd.randrange(2)}"),
            ("email", spelled),
            ("phone", phone),
            ("loyalty_id", f"LC-{p:06d}"),
            ("customer_id", f"CRM-{p:06d}"),
        ]
        chosen = rnd.sample(pool, rnd.choice([1, 1, 2, 2, 3]))
        out.append(
            ChannelEvent(
                event_id=f"s{seed}-{n:07d}",
                event_type=rnd.choice(["page_viewed", "order_placed", "email_opened", "purchase"]),
                channel=rnd.choice(channels),
                source=rnd.choice(["web-collector", "pos-store-042", "crm-export", "shop-de"]),
                occurred_at=start + timedelta(seconds=rnd.randrange(int(span.total_seconds()))),
                identifiers=[Identifier(namespace=ns, value=v) for ns, v in chosen],
                traits=Traits(first_name=f"Vorname{p}") if rnd.random() < 0.3 else Traits(),
                properties={"truth_person_id": str(p), "amount": "19.90", "currency": "EUR"},
            )
        )
    out.extend(rnd.sample(out, duplicates))
    rnd.shuffle(out)
    return out
