"""The stack's key vault node (``omnistitch vault``, pipeline.vault.service)."""

from __future__ import annotations

import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.stack.nodes import JavaNode


class VaultNode(JavaNode):
    """The key vault (``omnistitch vault``, pipeline.vault.service): a Python process, found by
    the same marker argument as the JVMs. Its token is made once, kept in ``<home>/vault/token``
    (readable by its owner only, never in the repository); the clients of this stack read it
    from there (``Settings.vault_token_value``) or from OMNISTITCH_VAULT_TOKEN."""

    name = "vault"

    @property
    def token_file(self) -> Path:
        return self.dir / "token"

    def token(self) -> str:
        return self.token_file.read_text().strip() if self.token_file.exists() else ""

    def ports(self) -> tuple[int, ...]:
        return (self.config.vault_port,)

    def prepare(self) -> None:
        if not self.token_file.exists():
            self.token_file.write_text(secrets.token_urlsafe(32))
            self.token_file.chmod(0o600)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pipeline.cli",
            "vault",
            "--port",
            str(self.config.vault_port),
            "--data",
            str(self.dir / "keys"),
            "--",
            self.marker,
        ]

    def environment(self) -> dict[str, str] | None:
        return {**os.environ, "OMNISTITCH_VAULT_TOKEN": self.token()}

    def ready(self) -> bool:
        try:
            url = f"{self.config.vault_url}/health"
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our http URL
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False
