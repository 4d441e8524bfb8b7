"""The audience rule language: docs/audiences.md's example parsed and evaluated on hand-made
profiles, consent enforced whatever the condition says, time-based conditions, membership
changes (an erased customer leaves every audience), and refused definitions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import yaml

from pipeline.engine.audiences import Audience, changes, evaluate, holds, parse
from pipeline.exceptions import ConfigurationError
from tests.conftest import REPO_ROOT
from tests.factories import NOW


def _documented() -> dict[str, Audience]:
    text = (REPO_ROOT / "docs" / "audiences.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None
    return {a.audience_id: a for a in parse(yaml.safe_load(block.group(1)))}


def _profile(**computed: Any) -> dict[str, Any]:
    """A profile as the API shows it (times as ISO strings)."""
    base: dict[str, Any] = {
        "customer_id": "cus-1",
        "identifiers": {"email": ["kim@example.de"]},
        "traits": {"city": "Berlin"},
        "consent": {"email_marketing": True, "sms": False},
        "computed": {
            "order_count": 2,
            "revenue": {"EUR": "620.00"},
            "revenue_by_channel": {"store": {"EUR": "500.00"}, "web": {"EUR": "120.00"}},
            "last_order_at": (NOW - timedelta(days=20)).isoformat(),
            "last_touch": {"web": (NOW - timedelta(days=3)).isoformat()},
            "open_cases": 0,
            "abandoned_cart": ["P-3"],
        },
    }
    base["computed"] |= computed
    return base


def test_the_documented_example_on_hand_made_profiles() -> None:
    found = _documented()
    assert set(found) == {
        "online-interest-store-buyers",
        "lapsed-customers",
        "abandoned-cart-sms",
        "high-value-berlin",
    }
    kim = _profile()
    assert evaluate(found["online-interest-store-buyers"], kim, NOW).member
    assert evaluate(found["high-value-berlin"], kim, NOW).member
    assert not evaluate(found["lapsed-customers"], kim, NOW).member  # ordered 20 days ago
    assert evaluate(found["lapsed-customers"], kim, NOW + timedelta(days=71)).member
    web_long_ago = _profile(last_touch={"web": (NOW - timedelta(days=8)).isoformat()})
    assert not evaluate(found["online-interest-store-buyers"], web_long_ago, NOW).member
    assert found["lapsed-customers"].time_based() and not found["high-value-berlin"].time_based()


def test_consent_is_enforced_whatever_the_condition_says() -> None:
    found = _documented()
    kim = _profile()
    kim["identifiers"]["phone"] = ["+4915112345678"]
    verdict = evaluate(found["abandoned-cart-sms"], kim, NOW)
    assert (verdict.member, verdict.reason) == (False, "no granted consent for sms")
    kim["consent"]["sms"] = True
    assert evaluate(found["abandoned-cart-sms"], kim, NOW).member
    kim["consent"]["email_marketing"] = False  # withdrawn
    assert not evaluate(found["online-interest-store-buyers"], kim, NOW).member


def test_comparisons() -> None:
    kim = _profile()
    for condition, expected in (
        ({"trait": "computed.revenue.EUR", "op": "gt", "value": 600}, True),
        ({"trait": "computed.revenue.EUR", "op": "lt", "value": "600.5"}, False),
        ({"trait": "computed.revenue.USD", "op": "gt", "value": 0}, False),  # missing
        ({"trait": "computed.revenue.USD", "op": "ne", "value": 0}, True),
        ({"trait": "traits.city", "op": "eq", "value": "Berlin"}, True),
        ({"trait": "computed.abandoned_cart", "op": "contains", "value": "P-3"}, True),
        ({"trait": "computed.abandoned_cart", "op": "contains", "value": "P-4"}, False),
        ({"not": {"identifier": "phone"}}, True),
        ({"any": [{"consent": "sms"}, {"consent": "email_marketing"}]}, True),
        ({"older_than_days": 1, "of": "computed.first_order_at"}, False),  # absent
    ):
        assert holds(condition, kim, NOW) is expected, condition


def test_membership_changes_and_an_erased_customer_leaves_everything() -> None:
    audiences = list(_documented().values())
    kim = _profile()
    members, moves = changes(audiences, kim, frozenset({"lapsed-customers", "retired"}), NOW)
    assert members == {"online-interest-store-buyers", "high-value-berlin"}
    assert sorted((a, entered) for a, entered, _ in moves) == [
        ("high-value-berlin", True),
        ("lapsed-customers", False),
        ("online-interest-store-buyers", True),
        ("retired", False),  # its definition is gone
    ]
    members, moves = changes(audiences, None, members, NOW)
    assert members == frozenset()
    assert {(a, entered) for a, entered, _ in moves} == {
        ("online-interest-store-buyers", False),
        ("high-value-berlin", False),
    }
    assert all("no longer exists" in reason for _, _, reason in moves)


@pytest.mark.parametrize(
    "definitions, message",
    [
        ({}, "expected"),
        ({"audiences": [{"id": "Bad Id", "condition": {"consent": "sms"}}]}, "lower-case"),
        ({"audiences": [{"id": "a", "condition": {}}]}, "non-empty"),
        (
            {"audiences": [{"id": "a", "condition": {"trait": "x", "op": "like", "value": 1}}]},
            "unknown op",
        ),
        ({"audiences": [{"id": "a", "condition": {"trait": "x", "op": "gt"}}]}, "needs a value"),
        ({"audiences": [{"id": "a", "condition": {"within_days": -1, "of": "x"}}]}, "days >= 0"),
        ({"audiences": [{"id": "a", "condition": {"colour": "red"}}]}, "unknown condition"),
        ({"audiences": [{"id": "a", "condition": {"consent": "sms"}}] * 2}, "defined twice"),
        (
            {"audiences": [{"id": "a", "condition": {"all": [{"consent": "sms"}] * 65}}]},
            "more than 64",
        ),
    ],
)
def test_a_bad_definition_is_refused_with_a_clear_message(definitions: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse(definitions)


def test_nesting_is_bounded() -> None:
    condition: dict[str, Any] = {"consent": "sms"}
    for _ in range(10):
        condition = {"not": condition}
    with pytest.raises(ConfigurationError, match="deeper"):
        parse({"audiences": [{"id": "deep", "condition": condition}]})
