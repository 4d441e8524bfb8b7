"""No personal data or secret reaches a log line, whoever logs it."""

from __future__ import annotations

import logging

import pytest

from pipeline import redaction


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    redaction.install(["wk-super-secret-1"])
    caplog.set_level(logging.DEBUG)
    return caplog


def test_urls_lose_their_credentials() -> None:
    assert (
        redaction.redact_url("https://user:pa55@registry:8081/apis")
        == "https://***@registry:8081/apis"
    )
    assert redaction.redact("GET http://alice:secret@h/x") == "GET http://***@h/x"


def test_library_records_keep_no_values(captured: pytest.LogCaptureFixture) -> None:
    raw = (
        b'{"email": "jane.doe@example.de", "phone": "+49 170 1234567", '
        b'"writeKey": "wk-super-secret-1"}'
    )
    logging.getLogger("aiohttp.server").error("Error handling request %r", raw)
    name = "".join(["Jür", "gen Müller"])  # not in any source line a traceback shows
    try:
        raise ValueError(f"Invalid input {name!r} in body")
    except ValueError as exc:
        logging.getLogger("aiohttp.server").exception("bad %s", exc)
        logging.getLogger("faust.worker").error("Crashed reason=%r", exc)
    logging.getLogger("httpx").info("HTTP Request: GET http://bob:pw1234@reg/subjects")
    logging.getLogger("faust.transport").debug("Sending (key=%r value=%r)", b"k", raw)
    text = captured.text
    for secret in (
        "jane.doe@example.de",
        "+49 170 1234567",
        "wk-super-secret-1",
        "Jürgen",
        "pw1234",
    ):
        assert secret not in text, secret
    assert "ValueError" in text  # the class stays, the message goes


def test_own_records_are_scrubbed_too(captured: pytest.LogCaptureFixture) -> None:
    logging.getLogger("omnistitch.test").warning("key %s for a@b.de", "wk-super-secret-1")
    assert "wk-super-secret-1" not in captured.text and "a@b.de" not in captured.text
