"""Personal data and secrets out of every log line, at any level, from any library.

omnistitch's own log lines name counts, reasons, topics and offsets, never values. Libraries are
not so careful: aiohttp logs the raw bytes of a malformed request, httpx logs registry URLs with
their user:password, exception messages quote the values that caused them. ``install()`` puts a
log record factory in front of every logger of the process (so it works whoever configured the
handlers, faust's worker included) that

- replaces the credentials of any URL (``scheme://user:password@host``) by ``***``;
- replaces every registered secret (write keys, SASL and registry passwords, tokens) by ``***``;
- replaces e-mail addresses by ``<email>`` and ``+``-prefixed phone numbers by ``<phone>``;
- for records of other libraries: exceptions among the arguments and the exception being logged
  keep their class name and traceback frames, never their message; raw bytes (message keys and
  values: faust and aiokafka log them at DEBUG) and message, event or record objects become a
  placeholder with their type (and size).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from typing import Any

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:]+(?::[^\s/@]*)?@")
_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d[\d\s/().-]{6,}\d")
_OWN = "omnistitch"

_secrets: set[str] = set()
_installed: list[Any] = []


def redact(text: str) -> str:
    """The text with URL credentials, registered secrets, e-mails and phone numbers replaced."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    text = _EMAIL.sub("<email>", text)
    return _PHONE.sub("<phone>", text)


def redact_url(url: str) -> str:
    """A URL fit for a log line: without user and password."""
    return _URL_CREDENTIALS.sub(r"\1***@", url)


def add_secrets(values: Iterable[str]) -> None:
    """Values that must never appear in a log line (at least 4 characters long)."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def _exception_text(exc_info: Any) -> str:
    kind, _value, tb = exc_info
    frames = "".join(traceback.format_tb(tb)) if tb is not None else ""
    name = kind.__name__ if kind is not None else "Exception"
    return f"Traceback (most recent call last):\n{frames}{name} (message withheld)"


class RedactedRecord(logging.LogRecord):
    """A log record whose message is scrubbed whenever a handler formats it."""

    def getMessage(self) -> str:
        return redact(super().getMessage())


_CARRIERS = ("Message", "Event", "Record", "Request", "Payload")


def _placeholder(arg: Any) -> Any:
    """An argument of a library's log call, unless it may carry data."""
    if isinstance(arg, bytes | bytearray | memoryview):
        return f"<{len(arg)} bytes>"
    name = type(arg).__name__
    if isinstance(arg, BaseException) or any(word in name for word in _CARRIERS):
        return f"<{name}>"
    return arg


def _scrub(record: logging.LogRecord) -> logging.LogRecord:
    foreign = not record.name.startswith(_OWN)
    if foreign and isinstance(record.args, tuple):
        record.args = tuple(_placeholder(a) for a in record.args)
    elif foreign and isinstance(record.args, dict):
        record.args = {k: _placeholder(v) for k, v in record.args.items()}
    record.__class__ = RedactedRecord
    if record.exc_info and record.exc_info[0] is not None:
        # Formatters use exc_text when it is set: the exception's message never gets there.
        if foreign:
            record.exc_text = _exception_text(record.exc_info)
        else:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact(text)
    return record


def install(secrets: Iterable[str] = ()) -> None:
    """Scrub every log record created in this process from now on (idempotent)."""
    add_secrets(secrets)
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _scrub(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed.append(factory)
