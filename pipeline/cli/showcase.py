"""The parts of `make demo` that use the product as its users do: the profile API (a lookup,
a graph, a journey, an in-store lookup) and the activation stage (audience sizes, a webhook
delivery to a receiver the demo starts)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.activation.receiver import Receiver
from pipeline.settings import Settings
from pipeline.stream.serialization import RegistrySerde


def api_get(base: str, token: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - local
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:
        return 0, None


def api_tour(settings: Settings, base: str, people: list[Any]) -> None:
    """The profile API (omnistitch serve) as a consumer uses it: a customer found by an
    e-mail address typed differently, their graph, journey and possible matches; the erased
    person no longer found; the viewer's address."""
    from urllib.parse import urlencode

    from pipeline.serving.tokens import local_token

    token = local_token(settings.serve_dir)
    deadline = time.monotonic() + 180
    person = people[2]  # people 0 and 1 share a family tablet: 0 is erased
    wanted = "/v1/lookup?" + urlencode({"namespace": "email", "value": person.email.upper()})
    while time.monotonic() < deadline and api_get(base, token, wanted)[0] != 200:
        time.sleep(1)
    status, profile = api_get(base, token, wanted)
    if status != 200:
        print(f"demo: profile API: lookup answered {status}; see .stack/demo-serve.log\n")
        return
    customer = profile["customer_id"]
    # The view follows three topics: the journey may come a little after the profile.
    journey: dict[str, Any] = {}
    while time.monotonic() < deadline:
        journey = api_get(base, token, f"/v1/customers/{customer}/journey?limit=500")[1] or {}
        if len(journey.get("events", [])) >= profile["event_count"]:
            break
        time.sleep(1)
    graph = api_get(base, token, f"/v1/customers/{customer}/graph")[1] or {}
    kinds = Counter(e["kind"] for e in graph.get("edges", []))
    print(f"demo: profile API on {base} (omnistitch serve, a view of the output topics):")
    print(
        f"      GET /v1/lookup?namespace=email&value=<an e-mail in capitals> → {customer}: "
        f"{profile['event_count']} events on {', '.join(profile['channels'])}, "
        f"{len(profile.get('merged_ids', []))} merged ids"
    )
    print(
        f"      its graph: {len(graph.get('nodes', []))} nodes, edges "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + f"; journey: {len(journey.get('events', []))} events"
    )
    erased = "/v1/lookup?" + urlencode({"namespace": "email", "value": people[0].email})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and api_get(base, token, erased)[0] == 200:
        time.sleep(1)
    print(f"      the erased person's e-mail → {api_get(base, token, erased)[0]}")
    # A card holder who allowed personalisation (the generator: one person in three).
    carded = next((p for p in people[2:] if p.loyalty_id and p.pid % 3 == 0), None)
    if carded is not None:
        till = "/v1/clienteling?" + urlencode(
            {"namespace": "loyalty_id", "value": carded.loyalty_id}
        )
        status, seen = api_get(base, token, till)
        # The first name is for the assistant's screen, not for this report.
        shown = {k: v for k, v in (seen or {}).items() if k not in ("customer_id", "first_name")}
        print(f"      at the till, GET /v1/clienteling by loyalty card → {status}: ")
        print(f"        {json.dumps(shown, ensure_ascii=False)} (and the first name)")
    print(
        f"      viewer: `make serve`, then {base}/ with the token in "
        f"{settings.serve_dir / 'token'}\n"
    )


DEMO_AUDIENCES = """
  - id: buyers
    description: Ordered at least once
    condition: {trait: computed.order_count, op: gte, value: 1}
  - id: store-regulars-newsletter
    description: Prefer a store, may receive marketing e-mail
    purpose: email_marketing
    condition:
      all:
        - {trait: computed.preferred_store, op: exists}
        - {identifier: email}
  - id: champions
    description: Top quintiles of frequency and monetary value
    condition: {all: [{trait: rfm.f, op: gte, value: 4}, {trait: rfm.m, op: gte, value: 4}]}
"""


def activation_files(logs: Path, url: str) -> tuple[Path, Path]:
    """The example audiences of docs/audiences.md plus the demo's, and one destination."""
    example = (Path(__file__).resolve().parents[2] / "docs" / "audiences.example.yaml").read_text()
    audiences = logs / "demo-audiences.yaml"
    audiences.write_text(example.rstrip() + "\n" + DEMO_AUDIENCES, encoding="utf-8")
    destinations = logs / "demo-destinations.yaml"
    destinations.write_text(
        "destinations:\n"
        f"  - {{id: demo-crm, url: '{url}', audiences: [champions],"
        " fields: [computed.preferred_store, computed.order_count], rate_per_s: 200}\n",
        encoding="utf-8",
    )
    return audiences, destinations


def activation_tour(
    settings: Settings, serde: RegistrySerde, receiver: Receiver, audiences: Path
) -> None:
    """Audience sizes (memberships.v1, compacted) and one webhook delivery."""
    from pipeline.contract.models import AudienceMembership
    from pipeline.stream.readback import latest_per_key
    from pipeline.stream.topics import MEMBERSHIPS

    topic = MEMBERSHIPS.name(settings.topic_prefix)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not receiver.got:
        time.sleep(1)
    from pipeline.activation.stage import load_audiences

    sizes: Counter[str] = Counter({a.audience_id: 0 for a in load_audiences(audiences)})
    for value in latest_per_key(settings, topic).values():
        if value is not None:
            sizes.update(serde.decode(topic, value, AudienceMembership)["audiences"])
    print(
        "demo: audiences (omnistitch activate, docs/audiences.md), current members on this stack:"
    )
    for audience, size in sorted(sizes.items()):  # members of every demo run so far
        print(f"      {audience:<32} {size:>6}")
    if receiver.got:
        first = receiver.got[0].body
        print(
            f"      webhook deliveries to the demo's receiver: {len(receiver.got)}; the first: "
            f"{first['event']} {first['audience_id']} {first['customer_id']} "
            f"with {json.dumps(first['profile'])} (the declared fields only)\n"
        )
    else:
        print("      no webhook delivery within 120 s; see .stack/demo-activate.log\n")
