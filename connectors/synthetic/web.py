"""Episodes on the web shop and in the app: browsing anonymously, identifying, shopping online."""

from __future__ import annotations

from typing import Any

from connectors.synthetic.timeline import PRODUCTS, StoryCore


class WebEpisodes(StoryCore):
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
