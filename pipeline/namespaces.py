"""Namespace rules: which identifiers are unique per profile, how many of a kind one profile may
hold, and which identifier decides when an event's identifiers disagree (priority)."""

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
    more values than this are refused. Lower ``priority`` decides first."""

    unique: bool = False
    max_per_profile: int = 50
    priority: int = 100

    @property
    def limit(self) -> int:
        return 1 if self.unique else self.max_per_profile


# Generous enough never to cut a real customer with 5 e-mails, 5 phones, 10 devices and 50
# anonymous ids; tight enough that a shared value cannot pull in a crowd.
DEFAULT_RULES: Mapping[str, NamespaceRule] = MappingProxyType(
    {
        "customer_id": NamespaceRule(unique=True, priority=0),
        "loyalty_id": NamespaceRule(unique=True, priority=10),
        "email": NamespaceRule(max_per_profile=10, priority=20),
        "phone": NamespaceRule(max_per_profile=10, priority=30),
        "order_id": NamespaceRule(max_per_profile=10_000, priority=40),
        "device_id": NamespaceRule(max_per_profile=25, priority=50),
        "anonymous_id": NamespaceRule(max_per_profile=500, priority=60),
    }
)


@dataclass(frozen=True)
class NamespaceRules:
    rules: Mapping[str, NamespaceRule] = field(default_factory=lambda: DEFAULT_RULES)
    default: NamespaceRule = field(default_factory=NamespaceRule)
    hairball_max_profiles: int = 3

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
            }:
                raise ConfigurationError(f"namespace rule {name!r}: unknown or malformed fields")
            if name == "*":
                default = replace(default, **fields)
            else:
                rules[name] = replace(rules.get(name, default), **fields)
        return cls(MappingProxyType(rules), default, hairball_max_profiles)
