"""The project's exceptions: every error omnistitch raises derives from OmnistitchError."""


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
