"""What linking one event decided: the customer, the folds of merged-away profiles, the identity
changes and the possible matches. Written by the graph and by the matcher it calls, read by
the stitcher and the linking stage."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pipeline.contract.models import IdentityChange
from pipeline.engine.identifiers import Node, hashed_identifier


@dataclass(frozen=True)
class Fold:
    """Tells the profile stage: move the loser's profile into the winner's."""

    loser: str
    winner: str


@dataclass
class Linked:
    """What linking one event decided."""

    customer_id: str
    duplicate: bool = False
    # The event carries an erased person's identifier: dropped, nothing linked or kept.
    erased: bool = False
    folds: list[Fold] = field(default_factory=list)
    changes: list[IdentityChange] = field(default_factory=list)
    # Possible matches found now: both customers record each other.
    possible: list[tuple[str, str]] = field(default_factory=list)
    # The event's identifiers that belong to its customer (refused ones left out).
    nodes: list[Node] = field(default_factory=list)


def change_id(*parts: str) -> str:
    """An IdentityChange's id from what caused it: the same cause, the same id (consumers
    deduplicate by it)."""
    return "chg-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def public_change(change: IdentityChange) -> IdentityChange:
    """The identity change as its topic carries it: the evidence's identifiers as hashes of their
    normalised values (pipeline.engine.identifiers.hashed_identifier), so the append-only topic
    holds no identifier. The graph state keeps the values (explain reads them there)."""
    if not any(evidence.identifiers for evidence in change.evidence):
        return change
    return change.model_copy(
        update={
            "evidence": [
                evidence.model_copy(
                    update={
                        "identifiers": [
                            hashed_identifier(i.namespace, i.value) for i in evidence.identifiers
                        ]
                    }
                )
                for evidence in change.evidence
            ]
        }
    )
