"""The project's exceptions: every error omnistitch raises derives from OmnistitchError."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.contract.dead_letters import Rejection


class OmnistitchError(Exception):
    """Root of all omnistitch errors."""


class ConfigurationError(OmnistitchError):
    """Settings are missing or inconsistent."""


class StackError(OmnistitchError):
    """The local Kafka / schema-registry stack could not be set up, started or stopped."""


class StackNotReadyError(StackError):
    """A stack process started but did not become ready within its timeout."""


class TopicError(OmnistitchError):
    """A topic could not be created, or exists with settings that differ from its definition."""


class SchemaError(OmnistitchError):
    """A schema file is missing or invalid, or a schema change is incompatible."""


class RegistryUnavailableError(OmnistitchError):
    """The schema registry could not be reached; the caller retries, nothing is dead-lettered."""


class DecodeError(OmnistitchError):
    """A record that cannot be decoded; carries the dead-letter rejection."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.reason}: {rejection.detail}")
        self.rejection = rejection


class UnreadableInputError(OmnistitchError):
    """An input file line is not JSON or not an object; the message names the line."""


class DeliveryError(OmnistitchError):
    """Kafka did not acknowledge records within the delivery timeout (or refused them).

    Nothing that raised this counts as accepted: the collector answers 503, the file connector
    keeps its checkpoint and tries again.
    """


class MappingConfigError(ConfigurationError):
    """A connector's mapping (file columns, write keys) is missing or invalid."""


class StateValueTooLargeError(OmnistitchError):
    """A state value would exceed the bound of one table record (the limits should prevent
    it; the record that caused it is dead-lettered instead of crashing the stage)."""


class OutputTooLargeError(OmnistitchError):
    """An output record would exceed the largest message the worker produces."""


class VaultUnavailableError(OmnistitchError):
    """The key vault could not be reached or failed; the caller waits and retries, nothing is
    dead-lettered and no offset moves past the record."""


class VaultError(OmnistitchError):
    """The key vault refused a request (bad token, over a limit, malformed)."""


class SealError(OmnistitchError):
    """A sealed value could not be opened: wrong key, altered bytes or an unknown format."""
