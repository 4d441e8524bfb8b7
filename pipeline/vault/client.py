"""The vault's clients: ``VaultClient`` over HTTP (connectors, worker, tools) and the in-process
``KeyStore`` itself (tests, replay); both answer ``issue``, ``fetch`` and ``shred``."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, Protocol

import urllib3

from pipeline.exceptions import VaultError, VaultUnavailableError
from pipeline.settings import Settings
from pipeline.vault.store import MAX_IDS_PER_CALL, Issue


class Vault(Protocol):
    def issue(self, requests: Sequence[Issue]) -> dict[str, bytes | None]: ...

    def fetch(self, ids: Sequence[str]) -> dict[str, bytes | None]: ...

    def shred(self, ids: Sequence[str], tags: Sequence[str]) -> int: ...


def _keys(answer: dict[str, Any]) -> dict[str, bytes | None]:
    return {k: None if v is None else base64.b64decode(v) for k, v in answer["keys"].items()}


class VaultClient:
    """Thread-safe (urllib3's pool), keep-alive. Raises VaultUnavailableError when the vault
    cannot be reached or fails (the caller waits and retries), VaultError when it refuses."""

    def __init__(self, url: str, token: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.http = urllib3.PoolManager(
            maxsize=4, retries=False, timeout=urllib3.Timeout(total=timeout_s)
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> VaultClient | None:
        """The configured vault, or None when OMNISTITCH_VAULT_URL is unset (nothing sealed)."""
        if not settings.vault_url:
            return None
        return cls(settings.vault_url, settings.vault_token_value(), settings.vault_timeout_s)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.request(
                "POST", self.url + path, body=json.dumps(body).encode(), headers=self.headers
            )
        except urllib3.exceptions.HTTPError as exc:
            raise VaultUnavailableError(f"vault unreachable: {type(exc).__name__}") from None
        if response.status >= 500:
            raise VaultUnavailableError(f"vault answered {response.status}")
        answer = json.loads(response.data or b"{}")
        if response.status != 200:
            raise VaultError(f"vault refused ({response.status}): {answer.get('error', '')}")
        return dict(answer)

    def issue(self, requests: Sequence[Issue]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for start in range(0, len(requests), MAX_IDS_PER_CALL):
            part = requests[start : start + MAX_IDS_PER_CALL]
            body = {"keys": [{"id": key_id, "tags": list(tags)} for key_id, tags in part]}
            out.update(_keys(self._post("/v1/issue", body)))
        return out

    def fetch(self, ids: Sequence[str]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for start in range(0, len(ids), MAX_IDS_PER_CALL):
            out.update(
                _keys(self._post("/v1/fetch", {"ids": list(ids[start : start + MAX_IDS_PER_CALL])}))
            )
        return out

    def shred(self, ids: Sequence[str], tags: Sequence[str]) -> int:
        shredded = 0
        step = MAX_IDS_PER_CALL // 2
        for start in range(0, max(len(ids), len(tags)), step):
            body = {
                "ids": list(ids[start : start + step]),
                "tags": list(tags[start : start + step]),
            }
            shredded += int(self._post("/v1/shred", body)["shredded"])
        return shredded

    def healthy(self) -> bool:
        try:
            return self.http.request("GET", self.url + "/health").status == 200
        except urllib3.exceptions.HTTPError:
            return False
