"""What every command shares: printing to the operator and log set-up (redaction first)."""

from __future__ import annotations

from pipeline.settings import Settings


def say(message: str) -> None:
    print(message, flush=True)


def setup_logging(settings: Settings, configure: bool = True) -> None:
    """Scrub personal data and secrets from every log record (pipeline.redaction); warn about
    OMNISTITCH_* variables no setting reads. ``configure=False``: faust sets up handlers."""
    import logging
    import os

    from pipeline import redaction
    from pipeline.settings import unknown_variables

    redaction.install(settings.secrets())
    if configure:
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    unknown = unknown_variables(os.environ)
    if unknown:
        logging.getLogger("omnistitch.settings").warning(
            "ignored: no setting reads %s (a typo?)", ", ".join(unknown)
        )
    # The registry client logs every request (and Apicurio's 404 on "associations") at INFO.
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
