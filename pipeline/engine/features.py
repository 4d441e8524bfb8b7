"""Features: what one record says about a person, normalised for comparison (pure).

A record's features map an attribute to a few normalised values (a customer may have seen
several spellings or addresses). The address is one composite value,
``street|house|postal code|city|region|country|line 2``: its parts are strongly correlated (the same
street almost always means the same postal code and city), so they are compared together by one
comparison instead of adding up as if they were independent evidence.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.contract.models import Traits
from pipeline.engine.identifiers import EMAIL, PHONE, Node
from pipeline.engine.names import digits, fold, house_key, street_key

Features = dict[str, list[str]]
# At most this many values per attribute on one customer (the oldest kept): a bound on the
# stored record (9 attributes x 4 values x ~60 bytes, well under 4 KiB).
MAX_VALUES_PER_ATTRIBUTE = 4
ADDRESS_PARTS = ("street", "house", "postal_code", "city", "region", "country", "line2")


def address_value(traits: Traits) -> str | None:
    """The composite address of a record, or None when it names no place at all."""
    parts = (
        street_key(traits.street) if traits.street else "",
        house_key(traits.house_number) if traits.house_number else "",
        digits(traits.postal_code or ""),
        street_key(traits.city) if traits.city else "",
        fold(traits.region, german=True).replace(" ", "") if traits.region else "",
        fold(traits.country, german=True).replace(" ", "") if traits.country else "",
        street_key(traits.address_line2) if traits.address_line2 else "",
    )
    if not any(parts[:4]):
        return None
    return "|".join(parts)


def address_parts(value: str) -> dict[str, str]:
    return dict(zip(ADDRESS_PARTS, value.split("|"), strict=True))


def features_of(traits: Traits, nodes: Sequence[Node]) -> Features:
    """What a record says about the person, normalised for comparison."""
    found: Features = {}

    def put(attribute: str, value: str | None) -> None:
        if value:
            found.setdefault(attribute, [])
            if value not in found[attribute]:
                found[attribute].append(value)

    put("first_name", (traits.first_name or "").strip())
    put("last_name", (traits.last_name or "").strip())
    birth = (traits.birth_date or "").strip()
    put("birth_date", birth if len(birth) == 10 and birth[4] == "-" else None)
    put("address", address_value(traits))
    put("address_line2", street_key(traits.address_line2) if traits.address_line2 else None)
    for node in nodes:
        if node.namespace == EMAIL:
            put("email", node.value)
        elif node.namespace == PHONE:
            put("phone", node.value)
    return found


def compared_values(
    attribute: str, left: Sequence[str], right: Sequence[str]
) -> tuple[Sequence[str], Sequence[str]]:
    """The values of both sides that are compared with each other: all of them, except that
    when both sides know an address with a street, their street-less addresses (a till receipt's
    postal code and town) are left out - otherwise the receipt's "same place, nothing more to
    compare" would hide that the streets both sides do know disagree (two namesakes in one town
    joined through one's receipt)."""
    if attribute != "address" or not left or not right:
        return left, right
    left_streets = [a for a in left if address_parts(a)["street"]]
    right_streets = [a for a in right if address_parts(a)["street"]]
    if left_streets and right_streets:
        return left_streets, right_streets
    return left, right


def merge_features(into: Features, other: Features) -> Features:
    """Both records' values, at most MAX_VALUES_PER_ATTRIBUTE per attribute (oldest kept)."""
    merged = {k: list(v) for k, v in into.items()}
    for attribute, value in new_values(into, other):
        merged.setdefault(attribute, []).append(value)
    return merged


def new_values(into: Features, other: Features) -> list[tuple[str, str]]:
    """The (attribute, value) pairs of ``other`` that merging would add to ``into``."""
    added: list[tuple[str, str]] = []
    for attribute, values in other.items():
        have = into.get(attribute, [])
        room = MAX_VALUES_PER_ATTRIBUTE - len(have)
        for value in values:
            if room <= 0:
                break
            if value not in have and (attribute, value) not in added:
                added.append((attribute, value))
                room -= 1
    return added


def reversed_names(features: Features) -> Features | None:
    """The record with first and last name swapped (a common entry mistake), or None."""
    first, last = features.get("first_name"), features.get("last_name")
    if not first or not last:
        return None
    return {**features, "first_name": last, "last_name": first}
