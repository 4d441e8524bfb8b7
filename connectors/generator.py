"""Synthetic omnichannel events with ground truth, for tests and benchmarks.

``synthetic_stream`` yields ChannelEvents of ``persons`` people across channels, without
unique-id conflicts: anonymous browsing identified later, devices, e-mails in several spellings,
phones in several formats, loyalty cards, CRM ids. ``properties["truth_person_id"]`` holds the
ground truth (for evaluation only; stitching never reads it).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from pipeline.contract import Channel, ChannelEvent, Identifier, Traits


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
