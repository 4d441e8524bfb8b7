"""The vault service over HTTP with its client: token, limits, issue/fetch/shred."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from pipeline.exceptions import VaultError, VaultUnavailableError
from pipeline.vault.client import VaultClient
from pipeline.vault.service import vault_app
from pipeline.vault.store import MAX_TAGS, memory_store

TOKEN = "unit-test-vault-token-0123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def vault_url() -> Iterator[str]:
    port = _free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(vault_app(memory_store(), TOKEN), access_log=None)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_issue_fetch_shred_over_http(vault_url: str) -> None:
    client = VaultClient(vault_url, TOKEN)
    assert client.healthy()
    keys = client.issue([("e:1", ["x|ann"]), ("e:2", [])])
    assert client.fetch(["e:1", "e:2", "e:3"]) == keys
    assert client.shred([], ["x|ann"]) == 1
    assert client.fetch(["e:1", "e:2"]) == {"e:1": None, "e:2": keys["e:2"]}


def test_a_wrong_token_and_requests_over_a_limit_are_refused(vault_url: str) -> None:
    with pytest.raises(VaultError, match="401"):
        VaultClient(vault_url, "not-the-token-at-all").fetch(["e:1"])
    client = VaultClient(vault_url, TOKEN)
    with pytest.raises(VaultError, match="400"):
        client.issue([("e:1", [f"x|{n}" for n in range(MAX_TAGS + 1)])])
    with pytest.raises(VaultError, match="400"):
        client._post("/v1/fetch", {"nope": 1})


def test_an_unreachable_vault_is_unavailable_not_refused() -> None:
    client = VaultClient(f"http://127.0.0.1:{_free_port()}", TOKEN, timeout_s=1)
    with pytest.raises(VaultUnavailableError):
        client.fetch(["e:1"])
    assert not client.healthy()


def test_a_short_token_is_refused_at_start() -> None:
    with pytest.raises(VaultError):
        vault_app(memory_store(), "short")
