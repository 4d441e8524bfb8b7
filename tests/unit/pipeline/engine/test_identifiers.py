from __future__ import annotations

import pytest

from pipeline.contract.models import Identifier, Traits
from pipeline.engine.identifiers import DropReason, Node, Normaliser

N = Normaliser()


@pytest.mark.parametrize(
    "raw",
    [
        "+49 170 1234567",
        "0170/1234567",
        "(0170) 1234567",
        "0049 170 1234567",
        "+49-170-123 45 67",
        "0170 123 4567",
        " +491701234567 ",
    ],
)
def test_german_mobile_numbers_are_one_number(raw: str) -> None:
    assert N.normalise("phone", raw) == Node("phone", "+491701234567")


def test_default_region_is_configurable() -> None:
    assert Normaliser(default_region="US").normalise("phone", "(415) 555-2671") == Node(
        "phone", "+14155552671"
    )
    assert Normaliser(default_region="AT").normalise("phone", "0664 1234567") == Node(
        "phone", "+436641234567"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Zoe.OBrien@Example.IE ", "zoe.obrien@example.ie"),
        ("JUERGEN@MUELLER.DE", "juergen@mueller.de"),
        ("jürgen.müller@münchen.de", "jürgen.müller@münchen.de"),
        ("a.b+newsletter@gmail.com", "a.b+newsletter@gmail.com"),
    ],
)
def test_emails_are_trimmed_lowercased_and_validated(raw: str, expected: str) -> None:
    assert N.normalise("email", raw) == Node("email", expected)


@pytest.mark.parametrize(
    "raw", ["not-an-email", "a@b", "two@@signs.de", "spaces in@mail.de", "@nolocal.de"]
)
def test_invalid_emails_are_dropped_with_a_reason(raw: str) -> None:
    assert N.normalise("email", raw) is DropReason.invalid_email


@pytest.mark.parametrize("raw", ["abc", "12", "+49 1"])
def test_invalid_phones_are_dropped_with_a_reason(raw: str) -> None:
    assert N.normalise("phone", raw) is DropReason.invalid_phone


@pytest.mark.parametrize(
    ("namespace", "raw"),
    [
        ("email", "test@test.com"),
        ("email", "noreply@shop.de"),
        ("email", "no-reply@service.example.com"),
        ("email", "DoNotReply@bank.de"),
        ("phone", "0000000000"),
        ("phone", "+49 1111 111111"),
        ("device_id", "00000000-0000-0000-0000-000000000000"),
        ("anonymous_id", "undefined"),
        ("customer_id", "NULL"),
        ("loyalty_id", "n/a"),
        ("loyalty_id", "0"),
        ("order_id", "none"),
        ("device_id", "unknown"),
    ],
)
def test_junk_never_links(namespace: str, raw: str) -> None:
    assert N.normalise(namespace, raw) is DropReason.junk


def test_empty_values_are_dropped() -> None:
    assert N.normalise("device_id", "   ") is DropReason.empty


def test_the_junk_list_can_be_extended() -> None:
    custom = Normaliser(extra_junk=frozenset({"KIOSK-TABLET-01"}))
    assert custom.normalise("device_id", "kiosk-tablet-01") is DropReason.junk
    assert N.normalise("device_id", "kiosk-tablet-01") == Node("device_id", "kiosk-tablet-01")


def test_other_namespaces_are_trimmed_only_and_namespace_names_canonical() -> None:
    assert N.normalise("Device-ID", "  AbC-123 ") == Node("device_id", "AbC-123")


def test_event_nodes_include_trait_contacts_and_count_drops() -> None:
    nodes, dropped = N.nodes(
        [
            Identifier(namespace="email", value="Zoe@Example.ie"),
            Identifier(namespace="email", value="zoe@example.ie "),
            Identifier(namespace="phone", value="abc"),
            Identifier(namespace="anonymous_id", value="null"),
        ],
        Traits(email="ZOE@example.ie", phone="0170 1234567"),
    )
    assert nodes == [Node("email", "zoe@example.ie"), Node("phone", "+491701234567")]
    assert dropped == {DropReason.invalid_phone: 1, DropReason.junk: 1}


@pytest.mark.parametrize("namespace", ["\r", "  ", "e|mail", "ëmail", "a\x00b"])
def test_a_namespace_that_is_not_a_plain_name_is_dropped(namespace: str) -> None:
    """Found by the fuzz test: "\\r" became an empty namespace; "|" would forge graph keys."""
    nodes, dropped = Normaliser().nodes([Identifier(namespace=namespace, value="v-123456")])
    assert nodes == [] and dropped == {DropReason.invalid_namespace: 1}
