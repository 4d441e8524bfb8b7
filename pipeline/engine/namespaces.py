"""Namespace rules: which identifiers are unique per profile, how many of a kind one profile may
hold, what happens beyond that, and which identifier decides when an event's identifiers
disagree (priority).

Beyond ``max_per_profile`` a namespace either refuses the link (a conflict: e-mails, phones,
devices: more of them would pull in strangers) or rolls (``rolls``: the oldest value leaves the
customer's record, still counted, while its node keeps pointing to the customer; anonymous ids
and order ids accumulate without limit for a loyal customer). Together with the identifier size
limit (pipeline.contract.limits) and ``max_namespaces`` this bounds the bytes of every customer
record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from pipeline.exceptions import ConfigurationError


@dataclass(frozen=True)
class NamespaceRule:
    """``unique``: at most one value per profile (a CRM id, a loyalty card). ``max_per_profile``:
    more values than this are refused, or with ``rolls`` the oldest leaves the record. Lower
    ``priority`` decides first."""

    unique: bool = False
    max_per_profile: int = 10
    priority: int = 100
    rolls: bool = False

    @property
    def limit(self) -> int:
        return 1 if self.unique else self.max_per_profile


# Generous enough never to cut a real customer with 5 e-mails, 5 phones, 10 devices; tight
# enough that a shared value cannot pull in a crowd. Anonymous ids and order ids roll: a customer
# record keeps the latest 100 of each (their nodes keep linking).
DEFAULT_RULES: Mapping[str, NamespaceRule] = MappingProxyType(
    {
        "customer_id": NamespaceRule(unique=True, priority=0),
        "loyalty_id": NamespaceRule(unique=True, priority=10),
        "email": NamespaceRule(max_per_profile=10, priority=20),
        "phone": NamespaceRule(max_per_profile=10, priority=30),
        "order_id": NamespaceRule(max_per_profile=100, priority=40, rolls=True),
        "device_id": NamespaceRule(max_per_profile=25, priority=50),
        "anonymous_id": NamespaceRule(max_per_profile=100, priority=60, rolls=True),
    }
)


# The most values of one namespace a customer record may keep (rolling or not): with 256-byte
# values this keeps one namespace below 256 KiB even when escaped as JSON.
MAX_VALUES_PER_NAMESPACE = 1000


@dataclass(frozen=True)
class NamespaceRules:
    rules: Mapping[str, NamespaceRule] = field(default_factory=lambda: DEFAULT_RULES)
    default: NamespaceRule = field(default_factory=NamespaceRule)
    hairball_max_profiles: int = 3
    # Distinct namespaces one customer may hold: an identifier of one more is refused.
    max_namespaces: int = 16

    def worst_case_values(self) -> int:
        """The most identifier values one customer record can hold under these rules."""
        named = sorted((r.limit for r in self.rules.values()), reverse=True)
        others = max(0, self.max_namespaces - len(named)) * self.default.limit
        return sum(named[: self.max_namespaces]) + others

    def rule(self, namespace: str) -> NamespaceRule:
        return self.rules.get(namespace, self.default)

    def unique_namespaces(self) -> list[str]:
        return sorted(name for name, rule in self.rules.items() if rule.unique)

    @classmethod
    def from_json(cls, overrides: str, hairball_max_profiles: int = 3) -> NamespaceRules:
        """Defaults changed by a JSON object: ``{"email": {"max_per_profile": 20},
        "membership_no": {"unique": true, "priority": 5}, "*": {"max_per_profile": 30}}``."""
        if hairball_max_profiles < 1:
            raise ConfigurationError("hairball_max_profiles must be at least 1")
        if not overrides.strip():
            return cls(hairball_max_profiles=hairball_max_profiles)
        try:
            data: Any = json.loads(overrides)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"namespace rules are not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError("namespace rules must be a JSON object")
        rules = dict(DEFAULT_RULES)
        default = NamespaceRule()
        for name, fields in data.items():
            if not isinstance(fields, dict) or set(fields) - {
                "unique",
                "max_per_profile",
                "priority",
                "rolls",
            }:
                raise ConfigurationError(f"namespace rule {name!r}: unknown or malformed fields")
            if not 1 <= int(fields.get("max_per_profile", 1)) <= MAX_VALUES_PER_NAMESPACE:
                raise ConfigurationError(
                    f"namespace rule {name!r}: max_per_profile must lie in "
                    f"[1, {MAX_VALUES_PER_NAMESPACE}] (state values must stay small)"
                )
            if name == "*":
                default = replace(default, **fields)
            else:
                rules[name] = replace(rules.get(name, default), **fields)
        return cls(MappingProxyType(rules), default, hairball_max_profiles)
