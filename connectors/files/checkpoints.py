"""Per-file checkpoints of the file connector: the byte offset acknowledged by Kafka and the batch
in flight, written atomically, keyed by a fingerprint of the file's first bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

FINGERPRINT_BYTES = 1024


class Checkpoint(BaseModel):
    """How far one file was delivered; ``inflight`` names a batch that may be half delivered."""

    fingerprint: str = ""
    fingerprint_bytes: int = 0
    offset: int = 0
    line: int = 1
    rows: int = 0
    dead_letters: int = 0
    inflight: dict[str, Any] | None = None


def fingerprint(path: Path, length: int) -> str:
    with path.open("rb") as fh:
        return hashlib.sha256(fh.read(length)).hexdigest()


class CheckpointStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: str, name: str) -> Path:
        return self.root / kind / f"{name}.json"

    def load(self, kind: str, name: str) -> Checkpoint:
        path = self._path(kind, name)
        return Checkpoint.model_validate_json(path.read_bytes()) if path.exists() else Checkpoint()

    def save(self, kind: str, name: str, checkpoint: Checkpoint) -> None:
        """Atomically: a crash leaves the old or the new checkpoint, never half of one."""
        path = self._path(kind, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        with tmp.open("wb") as fh:
            fh.write(checkpoint.model_dump_json().encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
