"""Normalisation of identifiers: one canonical form per value, junk never links anything.

Pure functions. E-mail: trimmed, lower-cased, validated with email-validator; phone: E.164 with
phonenumbers in a configurable default region; every other namespace: trimmed. A value that is
invalid or junk is dropped with a counted reason; the event itself is kept.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from pipeline.contract.models import Identifier, Traits

EMAIL = "email"
PHONE = "phone"

DEFAULT_JUNK_VALUES: frozenset[str] = frozenset(
    {
        "",
        "null",
        "(null)",
        "nil",
        "none",
        "undefined",
        "unknown",
        "n/a",
        "na",
        "nan",
        "-",
        "test",
        "[object object]",
        "test@test.com",
        "test@test.de",
        "test@example.com",
        "email@email.com",
        "no@email.com",
        "none@none.com",
        "keine@angabe.de",
    }
)
_NO_REPLY_LOCAL = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|mailer[-_.]?daemon|postmaster|"
    r"bounces?|nobody|noemail|no[-_.]?mail|keine[-_.]?mail)$"
)
_SEPARATORS = re.compile(r"[\s\-_.:/()+]")
# A namespace, once canonical: lower-case letters, digits, "_" and "." (no key separator "|").
_NAMESPACE = re.compile(r"[a-z0-9_.]+")
# C0 and C1 control characters: no real identifier has one (and each costs six bytes in JSON).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class DropReason(StrEnum):
    empty = "empty"
    junk = "junk"
    invalid_email = "invalid_email"
    invalid_phone = "invalid_phone"
    control_characters = "control_characters"
    invalid_namespace = "invalid_namespace"


@dataclass(frozen=True, slots=True, order=True)
class Node:
    """A normalised identifier: a node of the customer graph."""

    namespace: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.namespace}|{self.value}"

    def to_identifier(self) -> Identifier:
        return Identifier.from_valid({"namespace": self.namespace, "value": self.value})

    def hashed(self) -> Identifier:
        """The identifier as the public topics carry it: its normalised value's SHA-256."""
        return hashed_identifier(self.namespace, self.value)


HASH_PREFIX = "sha256:"


def hashed_identifier(namespace: str, normalised_value: str) -> Identifier:
    """``sha256:<hex>`` of the normalised value (UTF-8): what journeys and identity changes carry
    instead of the value, so the append-only topics hold no identifier (docs/contract.md). A
    consumer that knows a value normalises and hashes it the same way to find it."""
    digest = hashlib.sha256(normalised_value.encode("utf-8", "surrogatepass")).hexdigest()
    return Identifier.from_valid({"namespace": namespace, "value": HASH_PREFIX + digest})


def canonical_namespace(namespace: str) -> str:
    return namespace.strip().lower().replace("-", "_").replace(" ", "_")


def _one_repeated_symbol(value: str) -> bool:
    stripped = _SEPARATORS.sub("", value)
    return len(set(stripped)) <= 1


@dataclass(frozen=True)
class Normaliser:
    """Configured normalisation: default phone region and the junk list (extendable)."""

    default_region: str = "DE"
    extra_junk: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        junk = DEFAULT_JUNK_VALUES | {value.strip().lower() for value in self.extra_junk}
        object.__setattr__(self, "_junk", junk)
        object.__setattr__(self, "normalise", lru_cache(maxsize=1 << 17)(self._normalise))

    def _is_junk(self, value: str) -> bool:
        return value.lower() in self._junk or _one_repeated_symbol(value)  # type: ignore[attr-defined]

    def _normalise(self, namespace: str, value: str) -> Node | DropReason:
        namespace = canonical_namespace(namespace)
        if not _NAMESPACE.fullmatch(namespace):
            return DropReason.invalid_namespace
        value = value.strip()
        if not value:
            return DropReason.empty
        if _CONTROL.search(value):
            return DropReason.control_characters
        if self._is_junk(value):
            return DropReason.junk
        if namespace == EMAIL:
            return self._email(value)
        if namespace == PHONE:
            return self._phone(value)
        return Node(namespace, value)

    def _email(self, value: str) -> Node | DropReason:
        try:
            checked = validate_email(value, check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError:
            return DropReason.invalid_email
        address = checked.normalized.lower()
        local = address.rsplit("@", 1)[0]
        if address in self._junk or _NO_REPLY_LOCAL.match(local):  # type: ignore[attr-defined]
            return DropReason.junk
        return Node(EMAIL, address)

    def _phone(self, value: str) -> Node | DropReason:
        try:
            number = phonenumbers.parse(value, self.default_region)
        except phonenumbers.NumberParseException:
            return DropReason.invalid_phone
        # "Possible" allows very short local numbers; fewer than 6 digits identify nobody.
        if not phonenumbers.is_possible_number(number) or len(str(number.national_number)) < 6:
            return DropReason.invalid_phone
        if _one_repeated_symbol(str(number.national_number)):
            return DropReason.junk
        return Node(PHONE, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

    def node_of(self, reference: str) -> Node | DropReason | None:
        """An identifier as an operator types it, ``namespace:value``: its node (normalised as
        the stitcher does), why it would be dropped, or None when it is not of that form."""
        namespace, sep, value = reference.partition(":")
        if not sep:
            return None
        return self.normalise(namespace, value)  # type: ignore[attr-defined,no-any-return]

    def nodes(
        self, identifiers: Iterable[Identifier], traits: Traits | None = None
    ) -> tuple[list[Node], Counter[DropReason]]:
        """The event's distinct nodes, sorted, and what was dropped, by reason.

        The e-mail address and phone number among the traits are identifiers of the same person
        and are normalised and linked like the ones in ``identifiers``.
        """
        pairs = [(i.namespace, i.value) for i in identifiers]
        if traits is not None:
            if traits.email:
                pairs.append((EMAIL, traits.email))
            if traits.phone:
                pairs.append((PHONE, traits.phone))
        found: set[Node] = set()
        dropped: Counter[DropReason] = Counter()
        for namespace, value in pairs:
            result = self.normalise(namespace, value)  # type: ignore[attr-defined]
            if isinstance(result, Node):
                found.add(result)
            else:
                dropped[result] += 1
        return sorted(found), dropped
