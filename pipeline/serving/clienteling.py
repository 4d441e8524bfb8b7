"""What a sales assistant sees at the till or on the shop floor when a customer shows a loyalty
card or gives a phone number (``GET /v1/clienteling``): the person's first name and whether a
support case of theirs is open (service: always), and — only when their latest consent for
``personalisation`` is a grant — their recent online interest, abandoned cart, preferred store
and last order. Nothing else: no contact data, no address, no birth date, no amounts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PURPOSE = "personalisation"


def assistant_view(profile: Mapping[str, Any]) -> dict[str, Any]:
    computed = profile.get("computed") or {}
    consent = (profile.get("consent") or {}).get(PURPOSE) is True
    view: dict[str, Any] = {
        "customer_id": profile.get("customer_id"),
        "first_name": (profile.get("traits") or {}).get("first_name"),
        "open_support_case": int(computed.get("open_cases") or 0) > 0,
        "personalisation": consent,
    }
    if consent:
        view |= {
            "recently_viewed": list(computed.get("recently_viewed") or [])[:5],
            "abandoned_cart": list(computed.get("abandoned_cart") or []),
            "preferred_store": computed.get("preferred_store"),
            "last_order_at": computed.get("last_order_at"),
        }
    return view
