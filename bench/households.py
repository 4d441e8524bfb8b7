"""German CRM and POS records of households and namesakes: the hard negatives of retail data.

Each household lives at one address and shares a surname (sometimes one member has a double
name); its members have other first names and birth dates. One person in ten has a namesake:
another person with the same first and last name in the same city, another street and birth
date. Every person appears in 1 to 4 records (CRM, POS) spelt as the channels spell names
(nicknames, umlauts folded, typing mistakes, upper case), with a birth date in most CRM records
and few POS ones (sometimes one digit mistyped), a postal code and city only at the till, and
one person in ten moved. No identifiers: only probabilistic matching can join the records, and
only the person attributes keep relatives and namesakes apart.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from connectors.synthetic.people import (
    FIRST_NAMES,
    LAST_NAMES,
    STREETS,
    Address,
    Person,
    make_person,
    typo,
    zipf,
)
from pipeline.contract.models import Channel, ChannelEvent, Traits

ANCHOR = datetime(2026, 11, 24, tzinfo=UTC)


def _member(rnd: random.Random, pid: int, head: Person, used: set[str]) -> Person:
    """Another person of ``head``'s household: same surname and address, own name and age."""
    person = make_person(rnd, pid, used)
    first, nicknames = zipf(rnd, FIRST_NAMES)
    last = head.last_name
    if rnd.random() < 0.1:
        last = f"{zipf(rnd, LAST_NAMES)}-{head.last_name}"
    person.first_name, person.nicknames, person.last_name = first, nicknames, last
    person.address = head.address
    return person


def _namesake(rnd: random.Random, pid: int, of: Person, used: set[str]) -> Person:
    """Someone else with ``of``'s name in ``of``'s city."""
    person = make_person(rnd, pid, used)
    person.first_name, person.nicknames, person.last_name = (
        of.first_name,
        of.nicknames,
        of.last_name,
    )
    person.address = Address(
        rnd.choice(STREETS), str(rnd.randint(1, 180)), of.address.postal_code, of.address.city
    )
    return person


def people(households: int, seed: int) -> list[Person]:
    rnd = random.Random(seed)  # noqa: S311 - synthetic data
    used: set[str] = set()
    found: list[Person] = []
    for _ in range(households):
        head = make_person(rnd, len(found), used)
        found.append(head)
        for _member_n in range(rnd.choice((0, 1, 1, 2, 2, 3))):
            found.append(_member(rnd, len(found), head, used))
    for person in list(found):
        if rnd.random() < 0.1:
            found.append(_namesake(rnd, len(found), person, used))
    return found


def _birth(rnd: random.Random, birth: str) -> str:
    if rnd.random() < 0.05:
        i = rnd.choice((2, 3, 6, 9))
        return birth[:i] + str(rnd.randrange(10)) + birth[i + 1 :]
    return birth


def events_of(households: int, seed: int) -> tuple[list[ChannelEvent], dict[str, str]]:
    """Every person's records as identifier-less CRM and POS events, shuffled, and the truth."""
    rnd = random.Random(seed + 1)  # noqa: S311 - synthetic data
    events: list[ChannelEvent] = []
    truth: dict[str, str] = {}
    for person in people(households, seed):
        for n in range(rnd.choice((1, 2, 2, 3, 4))):
            crm = rnd.random() < 0.5
            address = person.moved_to if person.moved_to and n > 0 else person.address
            first, last = person.name_variant(rnd)
            at_till = not crm and rnd.random() < 0.6
            event_id = f"hh-{person.pid}-{n}"
            truth[event_id] = str(person.pid)
            events.append(
                ChannelEvent(
                    event_id=event_id,
                    event_type="customer_updated" if crm else "purchase",
                    channel=Channel.crm if crm else Channel.store,
                    source="crm" if crm else "pos",
                    occurred_at=ANCHOR + timedelta(seconds=len(events)),
                    traits=Traits(
                        first_name=first,
                        last_name=last,
                        birth_date=_birth(rnd, person.birth_date)
                        if rnd.random() < (0.9 if crm else 0.3)
                        else None,
                        street=None
                        if at_till
                        else (typo(rnd, address.street) if rnd.random() < 0.1 else address.street),
                        house_number=None if at_till else address.house_number,
                        postal_code=address.postal_code,
                        city=address.city,
                        country="DE",
                    ),
                )
            )
    rnd.shuffle(events)
    return events, truth
