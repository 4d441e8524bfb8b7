import pytest

from pipeline.engine.namespaces import DEFAULT_RULES, NamespaceRules
from pipeline.exceptions import ConfigurationError


def test_defaults_never_cut_a_real_customer() -> None:
    rules = NamespaceRules()
    assert rules.rule("customer_id").unique and rules.rule("loyalty_id").unique
    assert rules.rule("email").limit >= 5
    assert rules.rule("phone").limit >= 5
    assert rules.rule("device_id").limit >= 10
    assert rules.rule("anonymous_id").limit >= 50
    assert rules.rule("membership_no") == rules.default


def test_priority_orders_unique_ids_first() -> None:
    order = sorted(DEFAULT_RULES, key=lambda ns: DEFAULT_RULES[ns].priority)
    assert order[:2] == ["customer_id", "loyalty_id"]


def test_rules_can_be_changed_and_added_by_json() -> None:
    rules = NamespaceRules.from_json(
        '{"email": {"max_per_profile": 3}, "membership_no": {"unique": true, "priority": 5},'
        ' "*": {"max_per_profile": 7}}',
        hairball_max_profiles=5,
    )
    assert rules.rule("email").limit == 3
    assert rules.rule("membership_no").unique and rules.rule("membership_no").priority == 5
    assert rules.rule("whatever").limit == 7
    assert rules.hairball_max_profiles == 5
    assert "membership_no" in rules.unique_namespaces()


@pytest.mark.parametrize("bad", ["{", "[]", '{"email": {"colour": 1}}', '{"email": 3}'])
def test_malformed_rules_are_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        NamespaceRules.from_json(bad)
