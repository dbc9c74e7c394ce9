"""Batch files: reading the input table, writing result parts atomically, the manifest, reading back.

Layout of an output folder::

    DIR/manifest.json            model, weights hash, whyllm version, settings
    DIR/parts/part-<hash>.parquet  finished rows; a part is written to a hidden temp file, fsynced,
                                   then renamed, so it is either whole or absent
    DIR/parts/.tmp-*             an interrupted write: never read, removed on the next run

A part's name is a hash of the keys it holds, so writing the same work twice (a retried Ray task,
a resumed run that redoes an unfinished unit) replaces the file with the same rows instead of adding
duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from whyllm.errors import InputError

__all__ = [
    "KEY_COLUMNS",
    "STATIC_COLUMNS",
    "clean_temp",
    "done_keys",
    "read_input",
    "read_manifest",
    "read_table",
    "row_key",
    "write_manifest",
    "write_part",
]

KEY_COLUMNS = ("id", "method", "parameters")
STATIC_COLUMNS = ("id", "row", "method", "parameters", "status", "error", "seconds", "result")
_FIELDS = ("id", "prompt", "target", "foil", "corrupted", "options")


def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """The exactly-once key of an output row: (id, method, canonical parameters)."""
    return (str(row["id"]), str(row["method"]), str(row["parameters"]))


def _records(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        out = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(
                    f"{path} line {n} is not JSON ({e.msg}); write one JSON object per line"
                ) from None
            if not isinstance(rec, dict):
                raise InputError(f"{path} line {n} is {type(rec).__name__}, not a JSON object")
            out.append(rec)
        return out
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        frame = (
            pd.read_csv(path, dtype=str, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(path)
        )
        return frame.to_dict(orient="records")
    raise InputError(f"input {str(path)!r} is not .jsonl, .csv or .parquet; convert it to one of those")


def _clean(value: Any, blank_is_none: bool) -> Any:
    """Cells: NaN becomes ``None`` (and an empty CSV cell); numpy values become Python's."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return None if blank_is_none and value == "" else value
    if hasattr(value, "tolist"):  # numpy scalars and arrays (Parquet list columns)
        return value.tolist()
    return value


def read_input(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL, CSV or Parquet file.

    Columns: ``prompt`` plus optional ``id``, ``target``, ``foil``, ``corrupted`` and ``options`` (a JSON
    object of per-row method options); other columns are ignored.

    Rows keep their order; a missing ``id`` becomes the row number. A prompt may be text or chat
    messages (a list of ``{"role", "content"}``, or that list as JSON text).

    Raises:
        InputError: unreadable file, no ``prompt`` column, or duplicate ids.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {str(path)!r} does not exist; give a .jsonl, .csv or .parquet file")
    records = _records(path)
    csv = path.suffix.lower() == ".csv"
    if records and not any("prompt" in r for r in records):
        raise InputError(f"{path} has no 'prompt' column (columns: {sorted(records[0])}); add one")
    rows, seen = [], set()
    for n, rec in enumerate(records):
        row = {k: _clean(rec.get(k), csv and k != "prompt") for k in _FIELDS}
        row["row"] = n
        row["id"] = str(row["id"]) if row["id"] is not None else str(n)
        if row["id"] in seen:
            raise InputError(
                f"{path}: id {row['id']!r} appears twice; ids must be unique (or leave them out)"
            )
        seen.add(row["id"])
        prompt = row["prompt"]
        if isinstance(prompt, str) and prompt.lstrip().startswith("[{"):
            try:
                row["prompt"] = json.loads(prompt)
            except json.JSONDecodeError:
                pass
        if isinstance(row["options"], str):
            try:
                row["options"] = json.loads(row["options"])
            except json.JSONDecodeError:
                row["options"] = {"__invalid__": row["options"]}
        rows.append(row)
    return rows


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory fds (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def part_name(keys: Iterable[tuple[str, str, str]]) -> str:
    """The file name of the part holding exactly ``keys`` (a hash: the same work, the same name)."""
    h = hashlib.sha256()
    for key in sorted(keys):
        h.update(json.dumps(key).encode())
    return f"part-{h.hexdigest()[:20]}.parquet"


def write_part(out: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as one Parquet part under ``out/parts``, atomically (temp file, fsync, rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = Path(out) / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    final = parts / part_name(row_key(r) for r in rows)
    tmp = parts / f".tmp-{uuid.uuid4().hex}.parquet"
    columns = list(STATIC_COLUMNS) + sorted({k for r in rows for k in r} - set(STATIC_COLUMNS))
    table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
    with open(tmp, "wb") as f:
        pq.write_table(table, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(parts)
    return final


def clean_temp(out: str | Path) -> int:
    """Remove the temp files of interrupted part writes; return how many there were."""
    parts = Path(out) / "parts"
    stale = list(parts.glob(".tmp-*")) if parts.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def _part_files(out: str | Path) -> list[Path]:
    parts = Path(out) / "parts"
    return sorted(p for p in parts.glob("part-*.parquet")) if parts.is_dir() else []


def done_keys(out: str | Path) -> set[tuple[str, str, str]]:
    """Keys of every row already written under ``out`` (finished parts only)."""
    import pyarrow.parquet as pq

    keys: set[tuple[str, str, str]] = set()
    for p in _part_files(out):
        t = pq.read_table(p, columns=list(KEY_COLUMNS)).to_pydict()
        keys.update(zip(t["id"], t["method"], t["parameters"], strict=True))
    return keys


def read_table(out: str | Path):  # -> pandas.DataFrame
    """Every finished row under ``out`` as one DataFrame, one row per key, in input order.

    Raises:
        InputError: ``out`` holds no parts.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    files = _part_files(out)
    if not files:
        raise InputError(
            f"{str(out)!r} holds no finished batch parts (parts/part-*.parquet); run whyllm batch"
        )
    frames = [pq.read_table(p).to_pandas() for p in files]
    frame = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else frames[0]
    )
    frame = frame.drop_duplicates(subset=list(KEY_COLUMNS), keep="first")
    return frame.sort_values(["row", "method", "parameters"], kind="stable").reset_index(drop=True)


def write_manifest(out: str | Path, manifest: dict[str, Any]) -> None:
    """Write ``out/manifest.json`` atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".manifest-{uuid.uuid4().hex}.json"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / "manifest.json")
    _fsync_dir(out)


def read_manifest(out: str | Path) -> dict[str, Any] | None:
    """The manifest of ``out``, or ``None`` when there is none yet."""
    path = Path(out) / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
