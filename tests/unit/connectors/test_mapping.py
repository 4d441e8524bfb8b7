"""The connectors' shared mapping vocabulary."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from connectors.mapping import (
    MappingFailure,
    birth_date,
    flat_properties,
    identifiers,
    parse_time,
    snake,
    split_name,
    split_street,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-20T09:14:03Z", datetime(2026, 11, 20, 9, 14, 3, tzinfo=UTC)),
        ("2026-11-20T10:14:03+01:00", datetime(2026, 11, 20, 9, 14, 3, tzinfo=UTC)),
        ("2026-11-20T09:14:03", datetime(2026, 11, 20, 9, 14, 3, tzinfo=UTC)),
        (1795651200, datetime(2026, 11, 26, 0, 0, tzinfo=UTC)),
        (1795651200000, datetime(2026, 11, 26, 0, 0, tzinfo=UTC)),
        ("1795651200", datetime(2026, 11, 26, 0, 0, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_iso_and_epoch_forms(raw: object, expected: datetime) -> None:
    assert parse_time(raw, "t") == expected


@pytest.mark.parametrize("raw", [None, "", "yesterday", True, {"a": 1}, 10**20, "²", "١٢٣"])
def test_parse_time_refuses_what_is_not_a_time_naming_the_field(raw: object) -> None:
    with pytest.raises(MappingFailure, match=r"^ts:"):
        parse_time(raw, "ts")


def test_parse_time_keeps_offsets() -> None:
    moment = parse_time("2026-11-20T09:14:03-05:00", "t")
    assert moment.utcoffset() == timezone(timedelta(hours=-5)).utcoffset(None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hauptstraße 12a", ("Hauptstraße", "12a")),
        ("Straße des 17. Juni 135", ("Straße des 17. Juni", "135")),
        ("Am Mühlbach 3 - 5", ("Am Mühlbach", "3-5")),
        ("221B Baker Street", ("Baker Street", "221B")),
        ("Kirchplatz", ("Kirchplatz", None)),
        ("", (None, None)),
    ],
)
def test_split_street(raw: str, expected: tuple[str | None, str | None]) -> None:
    assert split_street(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Anna-Lena Müller", ("Anna-Lena", "Müller")),
        ("Müller-Lüdenscheidt, Karl-Heinz", ("Karl-Heinz", "Müller-Lüdenscheidt")),
        ("Hans Peter Meier", ("Hans Peter", "Meier")),
        ("Cher", ("Cher", None)),
        (None, (None, None)),
    ],
)
def test_split_name(raw: str | None, expected: tuple[str | None, str | None]) -> None:
    assert split_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1984-02-29", "1984-02-29"),
        ("1984-02-29T00:00:00.000Z", "1984-02-29"),
        ("29.2.1984", "1984-02-29"),
        ("", None),
    ],
)
def test_birth_date(raw: str, expected: str | None) -> None:
    assert birth_date(raw) == expected


def test_snake_and_flat_properties() -> None:
    assert snake("Order Completed") == "order_completed"
    assert snake("postalCode") == "postal_code"
    flat = flat_properties({"orderId": 7, "cart": {"itemCount": 2}, "skus": ["a", "b"], "x": None})
    assert flat == {"order_id": "7", "cart_item_count": "2", "skus": '["a","b"]'}


def test_identifiers_skip_blank_values_and_repeat_once() -> None:
    found = identifiers([("email", " a@b.de "), ("email", "a@b.de"), ("phone", ""), ("x", None)])
    assert [(i.namespace, i.value) for i in found] == [("email", "a@b.de")]
