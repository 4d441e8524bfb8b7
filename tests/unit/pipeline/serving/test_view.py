"""The profile API's view of the output topics, on both backends: indexes, merges in either
order, versions, journeys (paged, bounded, moved by a split), erasure, offsets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pipeline.contract.models import ChangeType
from pipeline.serving.view import CustomerView, offset_key
from pipeline.vault.store import RocksCells
from tests.factories import NOW, make_change, make_event, make_journey, make_profile
from tests.unit.pipeline.serving.conftest import TOPICS, Feed


def _journey(customer: str, event_id: str, minutes: int, **extra: object) -> object:
    event = make_event(event_id=event_id, occurred_at=NOW - timedelta(minutes=minutes))
    return make_journey(customer_id=customer, event=event, **extra)


def test_an_identifier_finds_its_customer_and_a_removed_one_no_longer_does(
    view: CustomerView, feed: Feed
) -> None:
    feed.apply(feed.profile(make_profile(customer_id="c1", identifiers={"email": ["a@x.de"]})))
    assert view.holder("email", "a@x.de") == "c1"
    later = make_profile(customer_id="c1", identifiers={"email": ["b@x.de"]}, version=4)
    feed.apply(feed.profile(later))
    assert view.holder("email", "a@x.de") is None
    assert view.holder("email", "b@x.de") == "c1"
    assert view.profile("c1").version == 4  # type: ignore[union-attr]


def test_an_older_version_redelivered_changes_nothing(view: CustomerView, feed: Feed) -> None:
    feed.apply(feed.profile(make_profile(customer_id="c1", version=5)))
    applied = feed.apply(feed.profile(make_profile(customer_id="c1", version=4, identifiers={})))
    assert applied.ignored == 1
    assert view.profile("c1").version == 5  # type: ignore[union-attr]
    assert view.holder("email", "zoe@example.ie") == "c1"


def test_a_merge_in_either_order_leads_to_the_survivor_with_both_journeys(
    view: CustomerView, feed: Feed
) -> None:
    loser = make_profile(customer_id="c2", identifiers={"email": ["l@x.de"]}, merged_ids=[])
    survivor = make_profile(
        customer_id="c1", identifiers={"email": ["l@x.de", "s@x.de"]}, merged_ids=["c2"], version=9
    )
    feed.apply(feed.profile(loser), feed.journey(_journey("c2", "e-old", 30)))
    # The survivor's partition is read before the loser's tombstone (another partition).
    feed.apply(feed.profile(survivor), feed.journey(_journey("c1", "e-new", 10)))
    feed.apply(feed.tombstone("c2"))
    assert view.resolve("c2") == ("c1", True)
    assert view.holder("email", "l@x.de") == "c1"  # the tombstone did not unindex the survivor's
    assert view.profile("c2") is None
    events, cursor = view.journey("c1")
    assert [e["event"]["event_id"] for e in events] == ["e-new", "e-old"]
    assert cursor is None


def test_the_journey_pages_newest_first_and_keeps_at_most_its_bound(
    view: CustomerView, feed: Feed
) -> None:
    feed.apply(feed.profile(make_profile(customer_id="c1", merged_ids=[])))
    feed.apply(*[feed.journey(_journey("c1", f"e{i:02d}", 100 - i)) for i in range(25)])
    first, cursor = view.journey("c1", limit=8)
    assert [e["event"]["event_id"] for e in first] == [f"e{i:02d}" for i in range(24, 16, -1)]
    seen = [e["event"]["event_id"] for e in first]
    while cursor is not None:
        page, cursor = view.journey("c1", limit=8, before=cursor)
        seen += [e["event"]["event_id"] for e in page]
    # max_journey=20: the 5 oldest were dropped, each remaining one is shown once.
    assert seen == [f"e{i:02d}" for i in range(24, 4, -1)]
    # A redelivered event is one row, not two.
    feed.apply(feed.journey(_journey("c1", "e24", 76)))
    assert len(view.journey("c1", limit=500)[0]) == 20


def test_a_split_moves_a_journey_event_to_its_new_customer(view: CustomerView, feed: Feed) -> None:
    feed.apply(feed.profile(make_profile(customer_id="c1", merged_ids=[])))
    feed.apply(feed.profile(make_profile(customer_id="c3", merged_ids=[], identifiers={})))
    feed.apply(feed.journey(_journey("c1", "e1", 5)))
    feed.apply(feed.journey(_journey("c3", "e1", 5, corrects="c1")))
    assert view.journey("c1")[0] == []
    assert [e["event"]["event_id"] for e in view.journey("c3")[0]] == ["e1"]


def test_a_possible_match_is_seen_from_both_customers(view: CustomerView, feed: Feed) -> None:
    change = make_change(
        change_id="chg-pm",
        change_type=ChangeType.possible_match,
        customer_id="c1",
        old_customer_ids=["c4"],
    )
    feed.apply(feed.change(change))
    assert [c["change_id"] for c in view.changes("c1")] == ["chg-pm"]
    assert [c["change_id"] for c in view.changes("c4")] == ["chg-pm"]


def test_an_erase_leaves_nothing_of_the_person_and_later_records_are_ignored(
    view: CustomerView, feed: Feed
) -> None:
    survivor = make_profile(customer_id="c1", identifiers={"email": ["e@x.de"]}, merged_ids=["c2"])
    feed.apply(
        feed.profile(survivor),
        feed.journey(_journey("c1", "e1", 3)),
        feed.journey(_journey("c2", "e2", 4)),
        feed.change(make_change(customer_id="c1", old_customer_ids=["c2"])),
    )
    feed.apply(feed.profile(make_profile(customer_id="c9", identifiers={"email": ["o@x.de"]})))
    erased = make_change(
        change_id="chg-erase",
        change_type=ChangeType.erased,
        customer_id="c1",
        old_customer_ids=[],
        evidence=[],
    )
    feed.apply(feed.change(erased), feed.tombstone("c1"))
    feed.apply(feed.journey(_journey("c1", "e3", 1)))  # written before the erase, read after
    assert view.erased("c1") and view.erased("c2")
    assert view.holder("email", "e@x.de") is None
    assert view.journey("c1")[0] == [] and view.changes("c1") == []
    keys = list(view.cells.scan(b""))
    theirs = (b"c1", b"c2")
    left = {
        k.split(b"|")[0] for k in keys if k.split(b"|")[1] in theirs or view.cells.get(k) in theirs
    }
    assert left == {b"g"}, keys  # only the erased markers
    assert view.holder("email", "o@x.de") == "c9"  # another customer untouched


def test_offsets_are_written_with_the_rows_and_a_restart_resumes_there(tmp_path: Path) -> None:
    cells = RocksCells(tmp_path / "view", sync=False)
    feed = Feed(CustomerView(cells))
    feed.apply(
        feed.profile(make_profile(customer_id="c1", identifiers={"email": ["r@x.de"]})),
        feed.journey(_journey("c1", "e1", 2)),
        feed.journey(_journey("c1", "e2", 1)),
    )
    cells.close()
    again = CustomerView(RocksCells(tmp_path / "view", sync=False))
    assert again.offsets(TOPICS["journeys"], [0, 1]) == {0: 2, 1: 0}
    assert again.offsets(TOPICS["profiles"], [0]) == {0: 1}
    assert again.holder("email", "r@x.de") == "c1"
    assert again.cells.get(offset_key(TOPICS["changes"], 0)) is None
    again.cells.close()


def test_identifiers_are_indexed_by_their_public_hash_not_their_value(
    view: CustomerView, feed: Feed
) -> None:
    feed.apply(feed.profile(make_profile(customer_id="c1", identifiers={"email": ["v@x.de"]})))
    keys = b" ".join(view.cells.scan(b"i|"))
    assert b"v@x.de" not in keys and b"sha256:" in keys
    assert view.holder("email", "v@x.de") == "c1"
