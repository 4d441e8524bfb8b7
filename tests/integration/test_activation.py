"""Audiences on the real broker: a worker stitches, ``omnistitch activate`` follows the profiles;
a buyer with e-mail consent enters both audiences, a withdrawal of consent takes them out of the
e-mail one, a restart repeats nothing, an erase takes them out of everything and leaves a
membership tombstone."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.activation.receiver import Receiver
from pipeline.contract.models import AudienceChange, Channel, Identifier, Traits
from pipeline.stream.topics import AUDIENCES, MEMBERSHIPS
from tests.factories import NOW, make_event
from tests.integration.conftest import WorkerProcess, drain
from tests.integration.deployments import Run, wait_for

pytestmark = pytest.mark.integration


DEFINITIONS = """
audiences:
  - id: buyers
    condition: {trait: computed.order_count, op: gte, value: 1}
  - id: newsletter
    purpose: email_marketing
    condition: {identifier: email}
"""


def _changes(run: Run) -> list[AudienceChange]:
    topic = AUDIENCES.name(run.prefix)
    return [
        AudienceChange.from_avro(run.serde.decode(topic, m.value(), AudienceChange))
        for m in drain(run.kafka.bootstrap_servers, topic, idle_s=1.0)
    ]


def _memberships(run: Run) -> dict[str, list[str] | None]:
    topic = MEMBERSHIPS.name(run.prefix)
    from pipeline.contract.models import AudienceMembership

    latest: dict[str, list[str] | None] = {}
    for m in drain(run.kafka.bootstrap_servers, topic, idle_s=1.0):
        value = m.value()
        latest[m.key().decode()] = (
            None
            if value is None
            else AudienceMembership.from_avro(
                run.serde.decode(topic, value, AudienceMembership)
            ).audiences
        )
    return latest


def test_audiences_follow_orders_consent_and_an_erase(
    run_factory: Callable[[int], Run],
    worker_process: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    run = run_factory(2)
    run.env["OMNISTITCH_ERASURE_KEY"] = "integration-erasure-key-" + "1" * 16
    run.ready_worker("w0")
    kim = Identifier(namespace="email", value="kim.lo@example.com")
    ben = Identifier(namespace="email", value="ben.ox@example.com")
    run.produce(
        [
            make_event(
                event_id="a1",
                event_type="order_completed",
                channel=Channel.web,
                occurred_at=NOW - timedelta(days=1),
                identifiers=[kim],
                properties={"order_id": "W-1", "amount": "25.00", "currency": "EUR"},
                consent={"email_marketing": True},
            ),
            make_event(event_id="a2", identifiers=[ben]),
        ]
    )
    run.wait_for_journeys({"a1", "a2"})
    definitions = tmp_path / "audiences.yaml"
    definitions.write_text(DEFINITIONS, encoding="utf-8")
    receiver, updates = Receiver(), Receiver()
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text(
        "destinations:\n"
        f"  - {{id: crm, url: '{receiver.url}', audiences: [buyers],"
        " fields: [traits.first_name, computed.revenue]}\n"
        f"  - {{id: crm-sync, url: '{updates.url}', audiences: [buyers],"
        " fields: [traits.first_name], profile_updates: true}\n",
        encoding="utf-8",
    )
    env = {
        **run.env,
        "OMNISTITCH_AUDIENCES_FILE": str(definitions),
        "OMNISTITCH_DESTINATIONS_FILE": str(destinations),
        "OMNISTITCH_ACTIVATION_DIR": str(tmp_path / "activate"),
    }
    argv = [sys.executable, "-m", "pipeline.cli", "activate"]
    activate = worker_process(argv, env, name="activate")
    activate.start()

    def entered(customer: str | None = None) -> set[tuple[str, bool]]:
        return {
            (c.audience_id, c.entered) for c in _changes(run) if customer in (None, c.customer_id)
        }

    wait_for(lambda: entered() >= {("buyers", True), ("newsletter", True)}, "kim enters", 90)
    kim_id = next(c.customer_id for c in _changes(run) if c.audience_id == "buyers")
    assert {c.customer_id for c in _changes(run)} == {kim_id}  # ben: no order, no consent
    assert _memberships(run)[kim_id] == ["buyers", "newsletter"]
    wait_for(lambda: receiver.events() == [("buyers", "entered")], "the webhook gets kim", 60)
    (delivery,) = receiver.got
    key, body = delivery.headers["Idempotency-Key"], delivery.body
    assert body["profile"] == {"computed.revenue": {"EUR": "25.00"}}  # only declared fields
    assert "kim.lo" not in json.dumps(body)

    # A member's declared field changes: the updates destination hears of it.
    run.produce([make_event(event_id="a0", identifiers=[kim], traits=Traits(first_name="Kim"))])
    wait_for(
        lambda: any(b["profile"] == {"traits.first_name": "Kim"} for b in updates.bodies()),
        "the profile update reaches crm-sync",
        90,
    )
    assert all(b["event"] in ("entered", "updated") for b in updates.bodies())

    # An export for an ad platform: her e-mail, normalised and hashed, nothing else.
    exported = tmp_path / "newsletter.csv"
    code, _ = run.cli(
        "export", "--audience", "newsletter", "--platform", "meta", "--output", str(exported)
    )
    assert code == 0
    digest = hashlib.sha256(b"kim.lo@example.com").hexdigest()
    assert exported.read_text().splitlines() == ["email,phone", f"{digest},"]

    # Kim withdraws her consent: she leaves the e-mail audience, with the reason.
    run.produce([make_event(event_id="a3", identifiers=[kim], consent={"email_marketing": False})])
    wait_for(lambda: ("newsletter", False) in entered(kim_id), "kim leaves the newsletter", 90)
    left = next(c for c in _changes(run) if (c.audience_id, c.entered) == ("newsletter", False))
    assert left.reason == "no granted consent for email_marketing"
    assert left.purpose == "email_marketing"

    # A restart resumes from its own offsets: nothing is repeated.
    before = len(_changes(run))
    assert activate.stop() == 0, activate.tail()
    again = worker_process(argv, env, name="activate-2")
    again.start()
    wait_for(lambda: "activate: 2 audiences" in again.tail(), "the second activate runs", 60)
    run.produce([make_event(event_id="a4", identifiers=[ben])])
    run.wait_for_journeys({"a4"})
    assert len(_changes(run)) == before

    # An erase: out of every audience, a membership tombstone.
    code, out = run.cli("erase", "--customer", kim_id, "--operator", "dpo", "--json")
    assert code == 0, out
    wait_for(lambda: ("buyers", False) in entered(kim_id), "kim leaves the buyers", 90)
    wait_for(lambda: _memberships(run).get(kim_id, "") is None, "a membership tombstone", 60)
    wait_for(lambda: len(receiver.got) == 2, "the webhook gets the exit", 60)
    assert receiver.events() == [("buyers", "entered"), ("buyers", "exited")]  # once each
    assert receiver.got[1].body["profile"] == {}
    assert receiver.got[0].headers["Idempotency-Key"] == key
    changes = _changes(run)
    assert len({c.change_id for c in changes}) == len(changes)
    assert again.stop() == 0, again.tail()
