"""Synthetic omnichannel data with ground truth: ``omnistitch generate``.

``generate`` draws people (connectors.people) and what they do across a retailer's channels,
as the raw records each channel's system would send: Segment calls from the web shop and the
app, webhooks of the e-mail service, SMS/WhatsApp, Messenger, web chat, the call centre, the
helpdesk and the shop's orders and pickups, and rows of the store tills' (POS) and the CRM's
exports. The stories: anonymous browsing identified later, app logins, newsletters, store
purchases with a loyalty card, CRM records that differ slightly from the web sign-up (nicknames,
transliterations, typos, another e-mail, another phone format), people who moved, click &
collect (online order, pickup in store), support cases that start in chat and continue by phone
and e-mail, shared family devices, junk identifiers and webhooks delivered twice.

Every raw record carries the person's id as ``truth_person_id``; the connectors copy it into
``properties["truth_person_id"]``, which only evaluation reads, never stitching.

Two renderings of the same records: ``write_jsonl`` maps them with the connectors' own mappers
into ChannelEvents (the JSON-lines form that ``omnistitch replay`` reads), and ``send`` pushes
them through the real connectors (HTTP collector, webhooks, file drops).

``synthetic_stream`` is the small, conflict-free generator of the stitching tests and benchmark.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.files import DEFAULT_MAPPINGS, map_row
from connectors.mapping import TRUTH_PROPERTY
from connectors.people import Address, Person, make_person, phone_forms, typo
from connectors.segment import map_call
from connectors.webhooks import MAPPERS
from pipeline.contract import Channel, ChannelEvent, Identifier, Traits

SEGMENT_SOURCE = "segment"
STORES = tuple(f"store-{n:03d}" for n in range(1, 41))
PRODUCTS = (
    ("JKT-4411", "Winterjacke", "89.90"),
    ("SHO-1020", "Sneaker", "59.95"),
    ("SCF-0007", "Schal", "19.99"),
    ("JNS-3210", "Jeans", "49.90"),
    ("SHR-0815", "Hemd", "29.95"),
    ("BAG-2201", "Rucksack", "39.00"),
)


@dataclass(frozen=True)
class Touch:
    """One raw record for one connector: a Segment call, a webhook body or an export row."""

    connector: str  # "segment" | "webhook" | "file"
    target: str  # segment: "web" | "app"; webhook: source; file: kind (pos, crm)
    payload: dict[str, Any]
    at: datetime


@dataclass
class Scenario:
    customers: int
    seed: int
    people: list[Person]
    touches: list[Touch] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(f"{t.connector}:{t.target}" for t in self.touches)


class _Story:
    """Builds one person's touches on a timeline."""

    def __init__(
        self,
        rnd: random.Random,
        seed: int,
        person: Person,
        start: datetime,
        corruption: float = 1.0,
    ) -> None:
        self.rnd, self.seed, self.person, self.t = rnd, seed, person, start
        self.corruption = corruption
        self.touches: list[Touch] = []
        self.truth = str(person.pid)

    def later(self, low_s: float, high_s: float) -> datetime:
        self.t += timedelta(seconds=self.rnd.uniform(low_s, high_s))
        return self.t

    def uid(self, prefix: str) -> str:
        return f"{prefix}-{self.seed}-{self.person.pid}-{self.rnd.getrandbits(40):010x}"

    def add(self, connector: str, target: str, payload: dict[str, Any], at: datetime) -> None:
        self.touches.append(Touch(connector, target, payload, at))

    def email(self) -> str:
        email = self.person.email
        return self.rnd.choice([email, email, email.title(), f" {email.upper()}"])

    def phone(self) -> str:
        return self.rnd.choice(phone_forms(self.person.phone))

    def address(self, moved: bool = False) -> Address:
        return self.person.moved_to if moved and self.person.moved_to else self.person.address

    # -- Segment calls ------------------------------------------------------------------------

    def segment(self, target: str, call: dict[str, Any], at: datetime, device: str | None) -> None:
        context: dict[str, Any] = {
            TRUTH_PROPERTY: self.truth,
            "ip": f"203.0.113.{self.person.pid % 250}",
        }
        if target == "app":
            context["app"] = {"name": "Omni Shop", "version": "5.2.1"}
            context["os"] = {"name": self.rnd.choice(["iOS", "Android"])}
            context["device"] = {"id": device, "type": context["os"]["name"].lower()}
        else:
            context["userAgent"] = "Mozilla/5.0 (X11; Linux x86_64)"
        call = {
            **call,
            "messageId": self.uid("msg"),
            "timestamp": at.isoformat(),
            "context": context,
        }
        self.add("segment", target, call, at)

    def browse_then_identify(self) -> None:
        p = self.person
        for anonymous_id in p.anonymous_ids[: self.rnd.randint(1, len(p.anonymous_ids))]:
            for _ in range(self.rnd.randint(1, 4)):
                at = self.later(60, 3 * 86400)
                page = self.rnd.choice(["/", "/damen", "/herren", "/sale", "/filialen"])
                self.segment(
                    "web",
                    {
                        "type": "page",
                        "anonymousId": anonymous_id,
                        "name": page,
                        "properties": {"path": page, "url": f"https://shop.example.de{page}"},
                    },
                    at,
                    None,
                )
            if self.rnd.random() < 0.7:
                self.identify("web", anonymous_id, None)

    def identify(self, target: str, anonymous_id: str | None, device: str | None) -> None:
        p = self.person
        first, last = p.name_variant(self.rnd, self.corruption)
        email = "test@test.com" if self.rnd.random() < 0.02 else self.email()
        traits: dict[str, Any] = {"firstName": first, "lastName": last, "email": email}
        if self.rnd.random() < 0.5:
            traits["phone"] = self.phone()
        if self.rnd.random() < 0.4:
            address = self.address(moved=self.rnd.random() < 0.5)
            traits["address"] = {
                "street": f"{address.street_variant(self.rnd)} {address.house_number}",
                "postalCode": address.postal_code,
                "city": address.city,
                "country": "DE",
            }
        if self.rnd.random() < 0.3:
            traits["birthday"] = p.birth_date
        call: dict[str, Any] = {"type": "identify", "traits": traits}
        if anonymous_id:
            call["anonymousId"] = anonymous_id
        if p.customer_id:
            call["userId"] = p.customer_id
        elif not anonymous_id:
            return
        self.segment(target, call, self.later(5, 600), device)
        if p.customer_id and self.rnd.random() < 0.6:
            self.shop_online(target, anonymous_id, device)

    def shop_online(self, target: str, anonymous_id: str | None, device: str | None) -> None:
        sku, name, price = self.rnd.choice(PRODUCTS)
        ids = {"userId": self.person.customer_id}
        if anonymous_id:
            ids["anonymousId"] = anonymous_id
        for event in ("Product Viewed", "Product Added"):
            self.segment(
                target,
                {
                    "type": "track",
                    "event": event,
                    **ids,
                    "properties": {"sku": sku, "name": name, "price": price},
                },
                self.later(10, 900),
                device,
            )
        if self.rnd.random() < 0.5:
            order_id = self.uid("web-order")
            self.segment(
                target,
                {
                    "type": "track",
                    "event": "Order Completed",
                    **ids,
                    "properties": {
                        "order_id": order_id,
                        "total": price,
                        "currency": "EUR",
                        "products": [{"sku": sku, "price": price}],
                    },
                },
                self.later(30, 900),
                device,
            )

    def app(self) -> None:
        p = self.person
        device = p.shared_device or self.rnd.choice(p.devices)
        anonymous_id = f"app-{p.anonymous_ids[0]}"
        for _ in range(self.rnd.randint(1, 5)):
            screen = self.rnd.choice(["Home", "Produktliste", "Warenkorb", "Filialfinder"])
            self.segment(
                "app",
                {"type": "screen", "anonymousId": anonymous_id, "name": screen},
                self.later(60, 2 * 86400),
                device,
            )
        if self.rnd.random() < 0.8 or p.shared_device:
            self.identify("app", anonymous_id, device)
        if p.messenger_psid and p.customer_id:
            self.segment(
                "app",
                {
                    "type": "track",
                    "event": "Messenger Connected",
                    "userId": p.customer_id,
                    "context": {},
                    "properties": {},
                },
                self.later(60, 3600),
                device,
            )
            last = self.touches[-1]
            last.payload["context"]["externalIds"] = [
                {
                    "id": p.messenger_psid,
                    "type": "messenger_psid",
                    "collection": "users",
                    "encoding": "none",
                }
            ]

    # -- webhooks -----------------------------------------------------------------------------

    def hook(self, source: str, payload: dict[str, Any], at: datetime) -> None:
        self.add("webhook", source, payload, at)
        if self.rnd.random() < 0.02:  # at-least-once delivery by the sender: the same body again
            self.add("webhook", source, json.loads(json.dumps(payload)), at + timedelta(seconds=30))

    def newsletter(self) -> None:
        p = self.person
        campaign = self.rnd.choice(["winter-sale", "black-week", "new-in", "loyalty-news"])
        at = self.later(3600, 5 * 86400)
        message = self.uid("sg-msg")
        steps = ["delivered"] + (["open"] if self.rnd.random() < 0.5 else [])
        if "open" in steps and self.rnd.random() < 0.5:
            steps.append("click")
        if self.rnd.random() < 0.03:
            steps.append("unsubscribe")
        address = p.second_email if p.second_email and self.rnd.random() < 0.3 else p.email
        for step in steps:
            at += timedelta(minutes=self.rnd.randint(1, 600))
            item = {
                "email": address,
                "timestamp": int(at.timestamp()),
                "event": step,
                "sg_event_id": self.uid("sg-evt"),
                "sg_message_id": message,
                "campaign": campaign,
                TRUTH_PROPERTY: self.truth,
            }
            if step == "click":
                item["url"] = f"https://shop.example.de/{campaign}"
            if p.customer_id and self.rnd.random() < 0.5:
                item["customer_id"] = p.customer_id
            self.hook("email", item, at)

    def store_visit(self) -> None:
        p = self.person
        for _ in range(self.rnd.randint(1, 4)):
            at = self.later(86400, 20 * 86400)
            _sku, _name, price = self.rnd.choice(PRODUCTS)
            qty = self.rnd.randint(1, 3)
            card = p.loyalty_id or ""
            if self.rnd.random() < 0.03:
                card = self.rnd.choice(["0", "0000000000", "n/a"])  # junk typed at the till
            row = {
                "receipt_id": self.uid("R"),
                "store_id": self.rnd.choice(STORES[:8])
                if self.rnd.random() < 0.8
                else self.rnd.choice(STORES),
                "till_id": str(self.rnd.randint(1, 6)),
                "timestamp": at.isoformat(),
                "loyalty_card": card,
                "email": self.email() if self.rnd.random() < 0.15 else "",
                "amount": f"{float(price) * qty:.2f}",
                "currency": "EUR",
                "items": str(qty),
                "payment": self.rnd.choice(["card", "cash", "mobile"]),
                TRUTH_PROPERTY: self.truth,
            }
            self.add("file", "pos", row, at)

    def crm_record(self, moved: bool = False) -> None:
        p = self.person
        assert p.customer_id
        first, last = p.name_variant(self.rnd, self.corruption)
        address = self.address(moved)
        at = self.later(3600, 10 * 86400)
        email = p.second_email if p.second_email and self.rnd.random() < 0.5 else self.email()
        row = {
            "customer_id": p.customer_id,
            "first_name": first,
            "last_name": last,
            "birth_date": p.birth_date if self.rnd.random() < 0.8 else "",
            "street": address.street_variant(self.rnd),
            "house_number": address.house_number,
            "postal_code": address.postal_code,
            "city": address.city,
            "country": "DE",
            "email": email,
            "phone": self.phone() if self.rnd.random() < 0.7 else "",
            "loyalty_id": (p.loyalty_id if p.loyalty_in_crm else None) or "",
            "consent_email": self.rnd.choice(["ja", "nein", "1", "0", ""]),
            "consent_sms": self.rnd.choice(["ja", "nein", ""]),
            "updated_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            TRUTH_PROPERTY: self.truth,
        }
        self.add("file", "crm", row, at)

    def loyalty_signup(self) -> None:
        """The paper form at the till: name, address, birth date and the new card, no e-mail;
        the CRM export carries it without a customer id."""
        p = self.person
        first, last = p.name_variant(self.rnd, self.corruption)
        address = self.address()
        at = self.later(600, 86400)
        street = address.street_variant(self.rnd)
        if self.rnd.random() < 0.1 * self.corruption:
            street = typo(self.rnd, street)
        row = {
            "record_id": self.uid("signup"),
            "customer_id": "",
            "first_name": first,
            "last_name": last,
            "birth_date": p.birth_date if self.rnd.random() < 0.9 else "",
            "street": street,
            "house_number": address.house_number,
            "postal_code": address.postal_code,
            "city": address.city,
            "country": "DE",
            "email": "",
            "phone": self.phone() if self.rnd.random() < 0.4 else "",
            "loyalty_id": p.loyalty_id or "",
            "consent_email": "",
            "consent_sms": "",
            "updated_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            TRUTH_PROPERTY: self.truth,
        }
        self.add("file", "crm", row, at)

    def order(self, click_and_collect: bool) -> None:
        p = self.person
        sku, _name, price = self.rnd.choice(PRODUCTS)
        order_id = str(self.rnd.randint(10**7, 10**8 - 1)) + f"{p.pid % 1000:03d}"
        first, last = p.name_variant(self.rnd, self.corruption)
        address = self.address(moved=self.rnd.random() < 0.5)
        at = self.later(3600, 10 * 86400)
        store = self.rnd.choice(STORES[:8])
        body: dict[str, Any] = {
            "id": order_id,
            "order_number": f"#DE-{order_id}",
            "created_at": at.isoformat(),
            "email": self.email(),
            "total_price": price,
            "currency": "EUR",
            "source_name": self.rnd.choice(["web", "web", "app"]),
            "buyer_accepts_marketing": self.rnd.random() < 0.4,
            "customer": {"id": p.customer_id, "first_name": first, "last_name": last},
            "billing_address": {
                "first_name": first,
                "last_name": last,
                "address1": f"{address.street_variant(self.rnd)} {address.house_number}",
                "zip": address.postal_code,
                "city": address.city,
                "country_code": "DE",
            },
            "fulfilment": {"type": "click_and_collect", "pickup_store_id": store}
            if click_and_collect
            else {"type": "delivery"},
            "line_items": [{"sku": sku, "quantity": 1, "price": price}],
            TRUTH_PROPERTY: self.truth,
        }
        if self.rnd.random() < 0.3:
            body["phone"] = self.phone()
        if p.loyalty_id and p.loyalty_in_crm and self.rnd.random() < 0.3:
            body["loyalty_id"] = p.loyalty_id
        self.hook("orders", body, at)
        if click_and_collect:
            pickup = {
                "pickup_id": f"pickup-{order_id}",
                "order_id": order_id,
                "store_id": store,
                "picked_up_at": self.later(86400, 3 * 86400).isoformat(),
                "staff_id": f"s-{self.rnd.randint(1, 99):04d}",
                TRUTH_PROPERTY: self.truth,
            }
            if p.loyalty_id and p.loyalty_in_crm and self.rnd.random() < 0.5:
                pickup["loyalty_id"] = p.loyalty_id
            self.hook("pickups", pickup, self.t)

    def support_case(self) -> None:
        p = self.person
        ticket = f"T-{self.seed}-{p.pid}-{self.rnd.randint(100, 999)}"
        first, last = p.name_variant(self.rnd, self.corruption)
        conversation = self.uid("conv")
        at = self.later(3600, 10 * 86400)
        for n in range(self.rnd.randint(1, 3)):
            self.hook(
                "chat",
                {
                    "message_id": self.uid("chat"),
                    "conversation_id": conversation,
                    "sent_at": (at + timedelta(minutes=2 * n)).isoformat(),
                    "author": "visitor",
                    "ticket_id": ticket,
                    "visitor": {
                        "anonymous_id": self.rnd.choice(p.anonymous_ids),
                        "email": self.email() if n == 0 else None,
                        "name": f"{first} {last}",
                    },
                    TRUTH_PROPERTY: self.truth,
                },
                at + timedelta(minutes=2 * n),
            )
        call_at = self.later(86400, 2 * 86400)
        caller = "unknown" if self.rnd.random() < 0.05 else self.phone()
        self.hook(
            "calls",
            {
                "call_id": self.uid("call"),
                "direction": "inbound",
                "caller": caller,
                "caller_name": f"{last}, {first}",
                "started_at": call_at.isoformat(),
                "duration_s": self.rnd.randint(60, 900),
                "queue": "service",
                "agent_id": f"agent-{self.rnd.randint(1, 30)}",
                "ticket_id": ticket,
                TRUTH_PROPERTY: self.truth,
            },
            call_at,
        )
        for kind, status in (("ticket.updated", "pending"), ("ticket.solved", "solved")):
            solved_at = self.later(3600, 86400)
            requester = {"name": f"{first} {last}", "email": self.email(), "phone": self.phone()}
            if p.customer_id:
                requester["external_id"] = p.customer_id
            self.hook(
                "support",
                {
                    "id": self.uid("hd"),
                    "event": kind,
                    "occurred_at": solved_at.isoformat(),
                    "ticket": {
                        "id": ticket,
                        "status": status,
                        "via": "email" if status == "solved" else "phone",
                    },
                    "requester": requester,
                    TRUTH_PROPERTY: self.truth,
                },
                solved_at,
            )

    def messages(self) -> None:
        p = self.person
        whatsapp = self.rnd.random() < 0.6
        number = "+49" + p.phone
        at = self.later(3600, 10 * 86400)
        body = {
            "MessageSid": f"SM{self.rnd.getrandbits(128):032x}",
            "From": f"whatsapp:{number}" if whatsapp else number,
            "To": "whatsapp:+4930555123" if whatsapp else "+4930555123",
            "Body": "Hallo, ist meine Bestellung abholbereit?",
            "Direction": "inbound",
            "SmsStatus": "received",
            "NumSegments": "1",
            "Timestamp": at.isoformat(),
            TRUTH_PROPERTY: self.truth,
        }
        if whatsapp:
            body["ProfileName"] = p.first_name
        self.hook("twilio", body, at)
        if p.messenger_psid:
            at = self.later(3600, 5 * 86400)
            self.hook(
                "messenger",
                {
                    "object": "page",
                    "entry": [
                        {
                            "id": "104455667788990",
                            "time": int(at.timestamp() * 1000),
                            "messaging": [
                                {
                                    "sender": {"id": p.messenger_psid},
                                    "recipient": {"id": "104455667788990"},
                                    "timestamp": int(at.timestamp() * 1000),
                                    "message": {"mid": self.uid("m"), "text": "Habt ihr das in M?"},
                                    TRUTH_PROPERTY: self.truth,
                                }
                            ],
                        }
                    ],
                },
                at,
            )

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


# -- sending: the real connectors --------------------------------------------------------------


@dataclass
class SendReport:
    segment_calls: int = 0
    segment_requests: int = 0
    webhooks: int = 0
    file_rows: int = 0
    files: int = 0
    retries: int = 0
    failed: int = 0
    dead_lettered: int = 0

    def render(self) -> str:
        return (
            f"{self.segment_calls} Segment calls in {self.segment_requests} requests, "
            f"{self.webhooks} webhooks, {self.file_rows} rows in {self.files} files "
            f"({self.dead_lettered} dead-lettered by the collector, {self.retries} retries, "
            f"{self.failed} failed)"
        )


def _batches(calls: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(calls), size):
        yield calls[i : i + size]


async def _post(
    session: Any, url: str, report: SendReport, *, json_body: Any = None, form: Any = None
) -> None:
    import aiohttp

    for attempt in range(12):
        try:
            async with session.post(url, json=json_body, data=form) as resp:
                if resp.status == 200:
                    body = await resp.json()
                    report.dead_lettered += int(body.get("dead_lettered", 0))
                    return
                if resp.status not in (429, 502, 503, 504):
                    report.failed += 1
                    return
        except aiohttp.ClientError:
            pass
        report.retries += 1
        await asyncio.sleep(min(0.2 * 2**attempt, 5))
    report.failed += 1


async def _send_http(
    scenario: Scenario, base_url: str, write_key: str, report: SendReport, concurrency: int
) -> None:
    import base64

    import aiohttp

    token = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}  # Segment's basic auth: the key, no password
    limit = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:

        async def post(url: str, **kwargs: Any) -> None:
            async with limit:
                await _post(session, url, report, **kwargs)

        jobs = []
        calls = [t.payload for t in scenario.touches if t.connector == "segment"]
        for batch in _batches(calls, 100):
            body = {"batch": batch, "sentAt": datetime.now(UTC).isoformat()}
            jobs.append(post(f"{base_url}/v1/batch", json_body=body))
            report.segment_calls += len(batch)
            report.segment_requests += 1
        for touch in scenario.touches:
            if touch.connector != "webhook":
                continue
            url = f"{base_url}/v1/webhooks/{touch.target}"
            if touch.target == "twilio":  # Twilio posts forms
                jobs.append(post(url, form={k: str(v) for k, v in touch.payload.items()}))
            else:
                jobs.append(post(url, json_body=touch.payload))
            report.webhooks += 1
        await asyncio.gather(*jobs)


def write_drops(scenario: Scenario, drop_dir: Path, report: SendReport) -> None:
    """POS rows as one CSV per store, CRM rows as one export; each appears complete (rename)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for touch in scenario.touches:
        if touch.connector == "file":
            key = touch.payload.get("store_id", "export") if touch.target == "pos" else "export"
            groups[(touch.target, key)].append(touch.payload)
    for (kind, key), rows in sorted(groups.items()):
        folder = drop_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{kind}-{key}-{scenario.seed}.csv"
        part = folder / f".{final.name}.part"
        columns = list(dict.fromkeys(column for row in rows for column in row))
        with part.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        part.rename(final)
        report.files += 1
        report.file_rows += len(rows)


def send(
    scenario: Scenario, base_url: str, write_key: str, drop_dir: Path, concurrency: int = 8
) -> SendReport:
    """Push the scenario through the real connectors: HTTP collector and file drops."""
    report = SendReport()
    asyncio.run(_send_http(scenario, base_url.rstrip("/"), write_key, report, concurrency))
    write_drops(scenario, drop_dir, report)
    return report


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
