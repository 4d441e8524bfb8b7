"""Episodes of buying: store visits at the till (POS), CRM records, the loyalty card, orders
online with home delivery or click & collect."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from connectors.mapping import TRUTH_PROPERTY
from connectors.synthetic.people import typo
from connectors.synthetic.timeline import PRODUCTS, STORES, StoryCore


class CommerceEpisodes(StoryCore):
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
        self.survey(order_id, at)

    def survey(self, order_id: str, ordered_at: datetime) -> None:
        """One buyer in three answers the shop's NPS survey a few days later. Drawn from a
        generator of its own (seeded by the order), so that adding surveys left every other
        record of a seed as it was."""
        rnd = random.Random(f"survey-{self.seed}-{order_id}")  # noqa: S311 - synthetic data
        if rnd.random() >= 1 / 3:
            return
        submitted = ordered_at + timedelta(days=rnd.uniform(2, 6))
        respondent: dict[str, Any] = {"email": self.person.email}
        if self.person.customer_id:
            respondent["customer_id"] = self.person.customer_id
        answer = {
            "response_id": f"r-{order_id}",
            "survey_id": "nps-order",
            "score": rnd.choices(range(11), weights=[1, 1, 1, 1, 2, 3, 4, 8, 12, 14, 12])[0],
            "channel": "email",
            "submitted_at": submitted.isoformat(),
            "respondent": respondent,
            TRUTH_PROPERTY: self.truth,
        }
        self.add("webhook", "surveys", answer, submitted)
