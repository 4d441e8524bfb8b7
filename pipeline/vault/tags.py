"""Tags: how the vault finds every key of a person without holding an identifier.

A tag is the erasure's keyed hash of a normalised identifier (``x|<HMAC-SHA256(erasure key,
namespace|value)>``, pipeline.engine.erasure.Suppression), computed where a record is sealed:
from an event's identifiers, from the references an operation names, and from the e-mail
addresses and phone numbers found in the raw bytes of a record a connector could not map. An
erase shreds every key tagged with one of the person's identifiers, besides the keys of the
events the linker attached to them: records the worker never accepted are covered too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.contract.models import ChannelEvent, Identifier
from pipeline.engine.erasure import Suppression
from pipeline.engine.identifiers import EMAIL, PHONE, Node, Normaliser
from pipeline.exceptions import ConfigurationError
from pipeline.settings import Settings
from pipeline.vault.store import MAX_TAGS

MIN_ERASURE_KEY = 32
_EMAILS = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9.\-]{1,253}\.[A-Za-z]{2,24}")
_PHONES = re.compile(r"\+?\d[\d \-/().]{5,20}\d")


def normaliser_of(settings: Settings) -> Normaliser:
    return Normaliser(settings.default_region, frozenset(settings.junk_values))


def suppression_of(settings: Settings) -> Suppression | None:
    """The keyed hash of erased identifiers, from OMNISTITCH_ERASURE_KEY (None: unset)."""
    secret = settings.erasure_key.get_secret_value()
    if secret and len(secret) < MIN_ERASURE_KEY:
        raise ConfigurationError(
            f"OMNISTITCH_ERASURE_KEY is too short: at least {MIN_ERASURE_KEY} characters"
        )
    return Suppression(secret.encode()) if secret else None


@dataclass(frozen=True)
class Tagger:
    normaliser: Normaliser
    suppression: Suppression | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Tagger:
        return cls(normaliser_of(settings), suppression_of(settings))

    def _of(self, nodes: Iterable[Node]) -> list[str]:
        if self.suppression is None:
            return []  # no erasure key: nothing can be erased by identifier anyway
        return sorted({self.suppression.key(node.key) for node in nodes})[:MAX_TAGS]

    def of_event(self, event: ChannelEvent) -> list[str]:
        nodes, _dropped = self.normaliser.nodes(event.identifiers, event.traits)
        return self._of(nodes)

    def of_references(self, *references: str) -> list[str]:
        nodes = [self.normaliser.node_of(reference) for reference in references]
        return self._of(node for node in nodes if isinstance(node, Node))

    def of_text(self, raw: bytes | None) -> list[str]:
        """The tags of the e-mail addresses and phone numbers found in unmapped bytes."""
        text = (raw or b"").decode("utf-8", errors="replace")
        found = [Identifier(namespace=EMAIL, value=m) for m in _EMAILS.findall(text)]
        found += [Identifier(namespace=PHONE, value=m) for m in _PHONES.findall(text)]
        nodes, _dropped = self.normaliser.nodes(found[: 4 * MAX_TAGS])
        return self._of(nodes)
