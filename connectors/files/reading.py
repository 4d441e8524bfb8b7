"""Reading export files: rows of CSV or JSON lines with their byte offsets and line numbers, so
that a checkpoint can say exactly up to which byte a file was delivered."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.contract.dead_letters import Reason, Rejection


@dataclass(frozen=True)
class RawRow:
    line: int  # 1-based number of the row's first line in the file
    end: int  # byte offset just after the row
    raw: bytes
    parsed: dict[str, Any] | Rejection


def _records(data: bytes, start: int, first_line: int) -> Iterator[tuple[int, int, bytes]]:
    """Complete records from ``data`` (which begins at byte ``start``): a CSV record may span
    lines inside quotes; an unterminated last line is left for later."""
    line_no, offset, pending, pending_line, quotes = first_line, 0, b"", first_line, 0
    while True:
        nl = data.find(b"\n", offset)
        if nl < 0:
            return
        chunk = data[offset : nl + 1]
        offset = nl + 1
        if not pending:
            pending_line = line_no
        pending += chunk
        quotes += chunk.count(b'"')
        line_no += 1
        if quotes % 2 == 0:
            yield pending_line, start + offset, pending
            pending, quotes = b"", 0


def read_rows(
    path: Path, offset: int, first_line: int, header: list[str] | None, limit: int
) -> list[RawRow]:
    """Up to ``limit`` complete rows from ``offset``; CSV rows need the header's columns."""
    size = 1 << 20
    while True:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
        rows: list[RawRow] = []
        for line, end, raw in _records(data, offset, first_line):
            if len(rows) >= limit:
                break
            rows.append(RawRow(line, end, raw, _parse(path, raw, header, line)))
        if len(rows) >= limit or len(data) < size:
            return rows
        size *= 2  # a chunk too small for ``limit`` rows: read more


def _parse(
    path: Path, raw: bytes, header: list[str] | None, line: int
) -> dict[str, Any] | Rejection:
    try:
        decoded = raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError:
        return Rejection(Reason.invalid_utf8, f"line {line}: not UTF-8")
    if not decoded.strip():
        return Rejection(Reason.empty_record, f"line {line}: blank")
    if path.suffix == ".jsonl":
        try:
            value = json.loads(decoded)
        except json.JSONDecodeError as exc:
            return Rejection(Reason.malformed_json, f"line {line}: {exc.msg}")
        if not isinstance(value, dict):
            return Rejection(Reason.malformed_json, f"line {line}: not a JSON object")
        return value
    assert header is not None
    cells = next(csv.reader(io.StringIO(decoded)), [])
    if len(cells) != len(header):
        return Rejection(
            Reason.unmappable_record,
            f"line {line}: {len(cells)} columns, the header has {len(header)}",
        )
    return dict(zip(header, cells, strict=True))


def csv_header(path: Path) -> tuple[list[str], int] | None:
    """The header's column names and the byte offset after it; None until it is complete."""
    with path.open("rb") as fh:
        first = fh.readline()
    if not first.endswith(b"\n"):
        return None
    names = next(csv.reader(io.StringIO(first.decode("utf-8-sig"))), [])
    return [name.strip() for name in names], len(first)
