"""The vault service over HTTP with its client: token, limits, issue/fetch/shred."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.exceptions import VaultError, VaultUnavailableError
from pipeline.stack.nodes import free_port
from pipeline.vault.client import VaultClient
from pipeline.vault.service import vault_app
from pipeline.vault.store import MAX_TAGS, memory_store
from tests.servers import serving

TOKEN = "unit-test-vault-token-0123"


@pytest.fixture
def vault_url() -> Iterator[str]:
    with serving(vault_app(memory_store(), TOKEN)) as url:
        yield url


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
    client = VaultClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout_s=1)
    with pytest.raises(VaultUnavailableError):
        client.fetch(["e:1"])
    assert not client.healthy()


def test_a_short_token_is_refused_at_start() -> None:
    with pytest.raises(VaultError):
        vault_app(memory_store(), "short")
