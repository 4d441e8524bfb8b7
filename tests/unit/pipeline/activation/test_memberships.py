"""The activation stage's state on both backends: entering and leaving audiences as profiles
change, consent withdrawn, a tombstone (erased or merged away), the clock (time-based
audiences), new, changed and removed definitions, and a sealed profile whose key is gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.activation.memberships import Memberships, Outcome, due_key, member_key
from pipeline.contract.models import ComputedTraits
from pipeline.engine.audiences import Audience, parse
from pipeline.vault.store import Cells, MemoryCells, RocksCells, Staged
from tests.factories import NOW, make_profile
from tests.unit.pipeline.serving.conftest import decoded

DEFINITIONS = {
    "audiences": [
        {"id": "buyers", "condition": {"trait": "computed.order_count", "op": "gte", "value": 1}},
        {
            "id": "newsletter",
            "purpose": "email_marketing",
            "condition": {"identifier": "email"},
        },
        {
            "id": "lapsed",
            "condition": {"older_than_days": 90, "of": "computed.last_order_at"},
        },
    ]
}


@pytest.fixture(params=["memory", "rocksdb"])
def cells(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cells]:
    made: Cells = (
        MemoryCells() if request.param == "memory" else RocksCells(tmp_path / "m", sync=False)
    )
    yield made
    made.close()


def _open(record: dict[str, Any]) -> dict[str, Any] | None:
    return None if record.get("sealed") is not None else record


def _profile(version: int, consent: bool = True, orders: int = 1, **extra: Any) -> dict[str, Any]:
    computed = ComputedTraits(order_count=orders, last_order_at=NOW - timedelta(days=10))
    return decoded(
        make_profile(
            customer_id="cus-1",
            version=version,
            consent={"email_marketing": consent},
            computed=computed,
            **extra,
        )
    )


def _apply(m: Memberships, items: list[tuple[str, Any]], now: Any = NOW) -> Outcome:
    staged, outcome = Staged(m.cells), Outcome()
    m.on_profiles(items, now, staged, outcome)
    staged.commit()
    return outcome


def _moves(outcome: Outcome) -> set[tuple[str, bool]]:
    return {(c.audience_id, c.entered) for c in outcome.changes}


def test_profiles_enter_and_leave_audiences(cells: Cells) -> None:
    m = Memberships(cells, parse(DEFINITIONS), _open)
    first = _apply(m, [("cus-1", _profile(1))])
    assert _moves(first) == {("buyers", True), ("newsletter", True)}
    assert first.memberships["cus-1"].audiences == ["buyers", "newsletter"]  # type: ignore[union-attr]
    again = _apply(m, [("cus-1", _profile(1))])  # redelivered: nothing new
    assert again.changes == [] and again.memberships == {}
    withdrawn = _apply(m, [("cus-1", _profile(2, consent=False))])
    (change,) = withdrawn.changes
    assert (change.audience_id, change.entered) == ("newsletter", False)
    assert change.reason == "no granted consent for email_marketing"
    assert _apply(m, [("cus-1", _profile(1))]).changes == []  # an older version: ignored
    assert m.members("cus-1") == ["buyers"]


def test_a_tombstone_leaves_everything_and_keeps_nothing(cells: Cells) -> None:
    m = Memberships(cells, parse(DEFINITIONS), _open)
    _apply(m, [("cus-1", _profile(1))])
    gone = _apply(m, [("cus-1", None)])
    assert _moves(gone) == {("buyers", False), ("newsletter", False)}
    assert gone.memberships == {"cus-1": None}
    assert cells.get(member_key("cus-1")) is None
    assert all(c.profile_version == -1 for c in gone.changes)


def test_time_based_audiences_change_with_the_clock(cells: Cells) -> None:
    audiences = parse(DEFINITIONS)
    m = Memberships(cells, audiences, _open)
    _apply(m, [("cus-1", _profile(1))])
    timed = frozenset(a.audience_id for a in audiences if a.time_based())
    assert timed == {"lapsed"}
    staged, outcome = Staged(cells), Outcome()
    m.sweep(timed, NOW + timedelta(days=85), staged, outcome)
    staged.commit()
    assert _moves(outcome) == {("lapsed", True)}
    assert m.members("cus-1") == ["buyers", "lapsed", "newsletter"]
    # The same sweep repeated (a crash before its state was written) repeats the same ids.
    staged, repeat = Staged(cells), Outcome()
    m2 = Memberships(MemoryCells(), audiences, _open)
    _apply(m2, [("cus-1", _profile(1))])
    m2.sweep(timed, NOW + timedelta(days=86), staged, repeat)
    assert {c.change_id for c in repeat.changes} == {c.change_id for c in outcome.changes}


def _ordered_at(customer: str, days_ago: int) -> dict[str, Any]:
    computed = ComputedTraits(order_count=1, last_order_at=NOW - timedelta(days=days_ago))
    return decoded(make_profile(customer_id=customer, version=1, computed=computed))


def _tick(m: Memberships, at: Any) -> tuple[int, Outcome]:
    staged, outcome = Staged(m.cells), Outcome()
    seen = m.sweep_due(frozenset({"lapsed"}), at, staged, outcome)
    staged.commit()
    return seen, outcome


def test_the_timer_looks_only_at_customers_whose_window_turned(cells: Cells) -> None:
    """ "lapsed" (last order more than 90 days ago) turns for each customer at its own moment:
    the index names the customers in time order, the timer reads nobody else."""
    m = Memberships(cells, parse(DEFINITIONS), _open)
    _apply(m, [("cus-1", _ordered_at("cus-1", 10)), ("cus-2", _ordered_at("cus-2", 50))])
    day = 86_400_000
    turns = {
        c: int((NOW - timedelta(days=d)).timestamp() * 1000) + 90 * day + 1
        for c, d in (("cus-1", 10), ("cus-2", 50))
    }
    assert list(cells.scan(b"t|")) == [
        due_key(turns["cus-2"], "cus-2"),
        due_key(turns["cus-1"], "cus-1"),
    ]
    assert _tick(m, NOW + timedelta(days=30)) == (0, Outcome())
    seen, outcome = _tick(m, NOW + timedelta(days=41))  # cus-2's window turned, not cus-1's
    assert seen == 1 and [(c.customer_id, c.audience_id, c.entered) for c in outcome.changes] == [
        ("cus-2", "lapsed", True)
    ]
    assert list(cells.scan(b"t|")) == [due_key(turns["cus-1"], "cus-1")]  # nothing more ahead
    assert m.members("cus-2") == ["buyers", "lapsed", "newsletter"]
    _apply(m, [("cus-1", None)])  # erased before its moment: gone from the index too
    assert list(cells.scan(b"t|")) == []
    assert _tick(m, NOW + timedelta(days=81)) == (0, Outcome())


def test_a_new_order_moves_the_customers_moment(cells: Cells) -> None:
    m = Memberships(cells, parse(DEFINITIONS), _open)
    _apply(m, [("cus-1", _ordered_at("cus-1", 80))])
    (first,) = list(cells.scan(b"t|"))
    later = _ordered_at("cus-1", 1)
    later["version"] = 2
    _apply(m, [("cus-1", later)])
    (moved,) = list(cells.scan(b"t|"))
    assert moved > first  # the old entry is gone, the new one later
    assert _tick(m, NOW + timedelta(days=11)) == (0, Outcome())


def test_new_changed_and_removed_definitions(cells: Cells) -> None:
    m = Memberships(cells, parse(DEFINITIONS), _open)
    _apply(m, [("cus-1", _profile(1))])
    staged, outcome = Staged(cells), Outcome()
    m.sweep(m.stale_definitions(), NOW, staged, outcome)
    staged.commit()
    assert m.stale_definitions() == frozenset()
    changed = {
        "audiences": [
            {
                "id": "buyers",
                "condition": {"trait": "computed.order_count", "op": "gte", "value": 2},
            },
            {"id": "cologne", "condition": {"trait": "traits.city", "op": "eq", "value": "Köln"}},
        ]
    }
    m = Memberships(cells, parse(changed), _open)
    stale = m.stale_definitions()
    assert stale == {"buyers", "cologne", "newsletter", "lapsed"}
    staged, outcome = Staged(cells), Outcome()
    m.sweep(stale, NOW, staged, outcome)
    staged.commit()
    assert _moves(outcome) == {("buyers", False), ("newsletter", False)}
    assert {c.reason for c in outcome.changes if c.audience_id == "newsletter"} == {
        "the audience was removed"
    }
    assert m.members("cus-1") == []
    assert m.stale_definitions() == frozenset()


def test_a_sweep_of_other_audiences_leaves_a_changed_definition_to_its_backfill(
    cells: Cells,
) -> None:
    """The timer's sweep of "lapsed" must not mark a changed "buyers" as built: only the
    audiences a sweep judged are recorded as current (a backfill that waited for the vault is
    done later, not forgotten)."""
    m = Memberships(cells, parse(DEFINITIONS), _open)
    _apply(m, [("cus-1", _profile(1))])
    staged, outcome = Staged(cells), Outcome()
    m.sweep(m.stale_definitions(), NOW, staged, outcome)
    staged.commit()
    stricter = dict(DEFINITIONS)
    stricter["audiences"] = [
        {"id": "buyers", "condition": {"trait": "computed.order_count", "op": "gte", "value": 2}},
        *DEFINITIONS["audiences"][1:],
    ]
    m = Memberships(cells, parse(stricter), _open)
    assert m.stale_definitions() == {"buyers"}
    staged, outcome = Staged(cells), Outcome()
    m.sweep(frozenset({"lapsed"}), NOW, staged, outcome)
    staged.commit()
    assert m.stale_definitions() == {"buyers"} and m.members("cus-1") == ["buyers", "newsletter"]
    staged, outcome = Staged(cells), Outcome()
    m.sweep(m.stale_definitions(), NOW, staged, outcome)
    staged.commit()
    assert m.stale_definitions() == frozenset() and m.members("cus-1") == ["newsletter"]


def test_a_sealed_profile_that_cannot_be_opened_changes_no_membership(cells: Cells) -> None:
    m = Memberships(cells, parse(DEFINITIONS), _open)
    _apply(m, [("cus-1", _profile(1))])
    sealed = _profile(2, orders=0) | {"sealed": b"x", "sealed_key": "t:gone"}
    outcome = _apply(m, [("cus-1", sealed)])
    assert outcome.changes == []
    assert m.members("cus-1") == ["buyers", "newsletter"]


def test_audience_objects_are_plain_data() -> None:
    (one,) = parse({"audiences": [{"id": "x", "condition": {"consent": "sms"}}]})
    assert one == Audience("x", {"consent": "sms"}, None, "")


def test_rfm_scores_are_published_and_usable_in_audiences(cells: Cells) -> None:
    definitions = {
        "audiences": [
            {"id": "champions", "condition": {"trait": "rfm.f", "op": "gte", "value": 4}},
        ]
    }
    m = Memberships(cells, parse(definitions), _open)
    customers = {f"cus-{n}": n + 1 for n in range(10)}  # 1..10 orders
    for customer, orders in customers.items():
        record = decoded(
            make_profile(
                customer_id=customer,
                version=1,
                computed=ComputedTraits(
                    order_count=orders,
                    last_order_at=NOW - timedelta(days=orders),
                    revenue={"EUR": str(orders * 10)},
                ),
            )
        )
        _apply(m, [(customer, record)])
    assert m.members("cus-9") == []  # no bins yet: no score
    staged = Staged(cells)
    assert m.refresh_bins(NOW, staged) == 10
    staged.commit()
    staged, outcome = Staged(cells), Outcome()
    m.sweep(frozenset({"champions"}), NOW, staged, outcome)
    staged.commit()
    scores = {c: ms.rfm for c, ms in outcome.memberships.items() if ms is not None}
    assert scores["cus-9"] == "155"  # most orders and revenue, but its last order is oldest
    assert scores["cus-0"] == "511"
    # 7 or more orders: the top two quintiles (groups {1,2} {3,4} {5,6} {7,8} {9,10}).
    assert {c.customer_id for c in outcome.changes if c.entered} == {
        "cus-6",
        "cus-7",
        "cus-8",
        "cus-9",
    }
    # The bins survive a restart of the stage.
    assert Memberships(cells, parse(definitions), _open).bins == m.bins
