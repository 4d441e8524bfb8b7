"""One person's timeline of raw channel records: the touches, the scenario they make up, and
the helpers every episode uses (time moving on, ids, the person's messy e-mail and phone forms,
Segment calls and webhook bodies)."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.mapping import TRUTH_PROPERTY
from connectors.synthetic.people import Address, Person, phone_forms

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


class StoryCore:
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
        if call.get("type") == "identify" and self.person.pid % 3 == 0:
            # One person in three allows personalisation in the shop's consent banner (by id,
            # not by a random draw: the rest of the data stays as it was).
            context["consent"] = {"categoryPreferences": {"personalisation": True}}
        call = {
            **call,
            "messageId": self.uid("msg"),
            "timestamp": at.isoformat(),
            "context": context,
        }
        self.add("segment", target, call, at)

    def hook(self, source: str, payload: dict[str, Any], at: datetime) -> None:
        self.add("webhook", source, payload, at)
        if self.rnd.random() < 0.02:  # at-least-once delivery by the sender: the same body again
            self.add("webhook", source, json.loads(json.dumps(payload)), at + timedelta(seconds=30))
