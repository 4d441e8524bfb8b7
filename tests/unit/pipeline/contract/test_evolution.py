"""Schema evolution: readers old and new read each other's records; check-schemas guards it."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import fastavro
import pytest

from pipeline.contract import schemas
from tests.conftest import REPO_ROOT
from tests.factories import make_rich_event


def _v2_with_optional_field() -> dict[str, Any]:
    v2 = copy.deepcopy(schemas.load(schemas.CHANNEL_EVENT))
    v2["fields"].append(
        {"name": "session_id", "type": ["null", "string"], "default": None, "doc": "Session."}
    )
    return v2


def _write(schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def _read(data: bytes, writer: Any, reader: Any) -> dict[str, Any]:
    result = fastavro.schemaless_reader(
        io.BytesIO(data), fastavro.parse_schema(writer), fastavro.parse_schema(reader)
    )
    assert isinstance(result, dict)
    return result


def test_old_reader_reads_records_of_a_schema_that_added_an_optional_field() -> None:
    v1, v2 = schemas.load(schemas.CHANNEL_EVENT), _v2_with_optional_field()
    record = {**make_rich_event().to_avro(), "session_id": "s-1"}
    seen_by_v1 = _read(_write(v2, record), writer=v2, reader=v1)
    assert "session_id" not in seen_by_v1
    assert seen_by_v1["traits"]["last_name"] == "Müller-Lüdenscheidt"


def test_new_reader_reads_old_records_with_the_default() -> None:
    v1, v2 = schemas.load(schemas.CHANNEL_EVENT), _v2_with_optional_field()
    record = make_rich_event().to_avro()
    seen_by_v2 = _read(_write(v1, record), writer=v1, reader=v2)
    assert seen_by_v2["session_id"] is None
    assert seen_by_v2["event_id"] == record["event_id"]


def test_old_reader_reads_a_new_channel_as_unknown() -> None:
    v1 = schemas.load(schemas.CHANNEL_EVENT)
    v2 = copy.deepcopy(v1)
    channel = next(f for f in v2["fields"] if f["name"] == "channel")
    channel["type"]["symbols"].append("metaverse")
    record = {**make_rich_event().to_avro(), "channel": "metaverse"}
    assert _read(_write(v2, record), writer=v2, reader=v1)["channel"] == "unknown"


def test_the_repository_schemas_are_compatible_with_their_released_versions() -> None:
    assert schemas.backward_problems() == {}
    released = {p.name for p in schemas.released_dir().glob("*.avsc")}
    assert released == {f"{name}.avsc" for name in schemas.schema_names()}


def _copy_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(schemas.schemas_dir(), target)
    return target


def _edit_event_schema(directory: Path, edit: Any) -> None:
    path = directory / f"{schemas.CHANNEL_EVENT}.avsc"
    schema = json.loads(path.read_text())
    edit(schema)
    path.write_text(json.dumps(schema))


def test_a_new_required_field_is_incompatible(tmp_path: Path) -> None:
    directory = _copy_schemas(tmp_path)
    _edit_event_schema(
        directory,
        lambda s: s["fields"].append({"name": "tenant", "type": "string", "doc": "Tenant."}),
    )
    problems = schemas.backward_problems(directory)
    assert "reader_field_missing_default_value" in problems[schemas.CHANNEL_EVENT][0]
    assert schemas.JOURNEY_EVENT in problems  # it embeds ChannelEvent


def test_an_optional_field_with_default_is_compatible(tmp_path: Path) -> None:
    directory = _copy_schemas(tmp_path)
    _edit_event_schema(
        directory,
        lambda s: s["fields"].append(
            {"name": "tenant", "type": ["null", "string"], "default": None, "doc": "Tenant."}
        ),
    )
    assert schemas.backward_problems(directory) == {}


@pytest.mark.parametrize(
    ("edit", "compatible"),
    [
        (lambda s: s["fields"].append({"name": "tenant", "type": "string", "doc": "T."}), False),
        (lambda s: s["fields"].pop(0) and None, True),  # readers may drop a field
        (lambda s: next(f for f in s["fields"] if f["name"] == "source").update(type="int"), False),
    ],
    ids=["required-field-added", "field-removed", "type-changed"],
)
def test_make_check_schemas_fails_on_an_incompatible_change(
    tmp_path: Path, edit: Any, compatible: bool
) -> None:
    directory = _copy_schemas(tmp_path)
    _edit_event_schema(directory, edit)
    done = subprocess.run(
        ["make", "--no-print-directory", "check-schemas"],
        cwd=REPO_ROOT,
        env={**os.environ, "OMNISTITCH_SCHEMAS_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if compatible:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0
        assert f"INCOMPATIBLE {schemas.CHANNEL_EVENT}" in done.stderr
