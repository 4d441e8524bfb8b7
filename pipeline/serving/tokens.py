"""API tokens: the environment holds only their SHA-256 (``OMNISTITCH_API_TOKENS``); a request's
bearer token is hashed and compared with every known hash in constant time, so neither a
token nor which one matched leaks through timing. Without configured tokens, ``omnistitch
serve`` makes one local token (``<serve_dir>/token``, mode 0600) that may also operate."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from pipeline.exceptions import ConfigurationError
from pipeline.settings import Settings

LOCAL = "local"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def local_token(folder: Path) -> str:
    """The local stack's API token, made once (0600)."""
    path = folder / "token"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True)
class ApiTokens:
    hashes: dict[str, bytes]  # name → SHA-256 digest
    operators: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiTokens:
        if not settings.api_tokens:
            digest = bytes.fromhex(token_hash(local_token(settings.serve_dir)))
            return cls({LOCAL: digest}, frozenset({LOCAL}))
        hashes = {}
        for name, hexdigest in settings.api_tokens.items():
            try:
                digest = bytes.fromhex(hexdigest.removeprefix("sha256:"))
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise ConfigurationError(
                    f"OMNISTITCH_API_TOKENS[{name!r}] is not a SHA-256 hex digest of a token"
                )
            hashes[name] = digest
        return cls(hashes, frozenset(settings.api_operators))

    def who(self, authorization: str) -> str | None:
        """The name of the token a ``Bearer <token>`` header carries, or None."""
        given = hashlib.sha256(authorization.removeprefix("Bearer ").strip().encode()).digest()
        found = None
        for name, digest in self.hashes.items():
            if hmac.compare_digest(given, digest):
                found = name
        return found

    def may_operate(self, name: str) -> bool:
        return name in self.operators
