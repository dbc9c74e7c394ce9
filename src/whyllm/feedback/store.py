"""The feedback store: verdicts on completions, kept in one SQLite file.

Each item records the model (name and weights fingerprint), the exact prompt text (and the chat messages
it was rendered from, if any), the decoding settings and seed, the completion's token ids and text, a
verdict (``good``/``bad``, with an optional reason), an optional corrected completion, who gave it and
from where (``cli``, ``app``, ``api``), and when.

Concurrency: the database runs in WAL mode with a busy timeout, and every write is one short
``BEGIN IMMEDIATE`` transaction on its own connection, so several processes can add feedback at once
without losing any. The schema is versioned with ``PRAGMA user_version``; opening an older file migrates
it in place (inside a transaction), opening a newer one is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from whyllm.errors import InputError, WhyllmError

__all__ = [
    "SCHEMA_VERSION", "SOURCES", "VERDICTS", "FeedbackStoreError", "connect", "default_db", "delete",
    "get", "insert", "insert_many", "select",
]

SCHEMA_VERSION = 1
VERDICTS = ("good", "bad")
SOURCES = ("cli", "app", "api")
BUSY_TIMEOUT_MS = 30_000

# Migration i brings a database from user_version i to i + 1. Append, never edit.
_MIGRATIONS = (
    """
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        model TEXT NOT NULL,
        weights_hash TEXT,
        prompt TEXT NOT NULL,
        messages TEXT,
        settings TEXT NOT NULL DEFAULT '{}',
        completion TEXT NOT NULL,
        completion_ids TEXT,
        verdict TEXT NOT NULL CHECK (verdict IN ('good', 'bad')),
        reason TEXT,
        correction TEXT,
        source TEXT NOT NULL CHECK (source IN ('cli', 'app', 'api')),
        user TEXT
    );
    CREATE INDEX feedback_model ON feedback (model, weights_hash);
    """,
)
_JSON_COLUMNS = ("messages", "settings", "completion_ids")
COLUMNS = (
    "id", "created_at", "model", "weights_hash", "prompt", "messages", "settings", "completion",
    "completion_ids", "verdict", "reason", "correction", "source", "user",
)


class FeedbackStoreError(WhyllmError, OSError):
    """The feedback database cannot be opened, read or written (corrupt, locked, too new)."""


def default_db() -> Path:
    """Return the default database: ``feedback.sqlite`` in whyllm's cache (``$WHYLLM_CACHE``)."""
    from whyllm.model.gguf_cache import cache_dir

    return cache_dir() / "feedback.sqlite"


def _explain(e: sqlite3.Error, path: Path) -> FeedbackStoreError:
    text = str(e)
    if "locked" in text or "busy" in text:
        return FeedbackStoreError(
            f"the feedback database {str(path)!r} stayed locked by another process for "
            f"{BUSY_TIMEOUT_MS // 1000} s ({text}); wait for it to finish and retry"
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return FeedbackStoreError(
            f"{str(path)!r} is not a readable feedback database ({text}); restore it from an export "
            "(whyllm feedback import) or choose another file with --db"
        )
    return FeedbackStoreError(f"the feedback database {str(path)!r} failed: {type(e).__name__}: {text}")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise FeedbackStoreError(
            f"{str(path)!r} has feedback schema version {version}, newer than this whyllm "
            f"understands ({SCHEMA_VERSION}); upgrade whyllm to use it"
        )
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
        for step in range(version, SCHEMA_VERSION):
            for statement in filter(str.strip, _MIGRATIONS[step].split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def connect(db: str | os.PathLike | None = None, *, write: bool = False) -> Iterator[sqlite3.Connection]:
    """Open the store (creating and migrating it if needed) for one short unit of work.

    With ``write=True`` the body runs inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error).

    Raises:
        FeedbackStoreError: the file is corrupt, locked for longer than the busy timeout, or newer.

    """
    path = Path(db).expanduser() if db is not None else default_db()
    if path.is_dir():
        raise FeedbackStoreError(f"{str(path)!r} is a folder; give the path of a feedback database file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except (OSError, sqlite3.Error) as e:
        raise FeedbackStoreError(f"cannot open the feedback database {str(path)!r}: {e}") from e
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        _migrate(conn, path)
        if not write:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        raise _explain(e, path) from e
    finally:
        conn.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def _row(item: dict[str, Any]) -> tuple:
    values = {**item, "created_at": item.get("created_at") or _now()}
    for key in _JSON_COLUMNS:
        if values.get(key) is not None:
            values[key] = json.dumps(values[key], ensure_ascii=False)
    values.setdefault("settings", "{}")
    return tuple(values.get(c) for c in COLUMNS[1:])


def _check(item: dict[str, Any]) -> None:
    for key in ("model", "prompt", "completion"):
        if not isinstance(item.get(key), str):
            raise InputError(f"a feedback item needs {key!r} as text, got {item.get(key)!r}")
    if item.get("verdict") not in VERDICTS:
        raise InputError(f"verdict must be one of {', '.join(VERDICTS)}, got {item.get('verdict')!r}")
    if item.get("source") not in SOURCES:
        raise InputError(f"source must be one of {', '.join(SOURCES)}, got {item.get('source')!r}")


def insert_many(db: str | os.PathLike | None, items: Sequence[dict[str, Any]]) -> list[int]:
    """Store ``items`` (plain dicts with the columns) in one transaction; return their new ids."""
    for item in items:
        _check(item)
    placeholders = ", ".join("?" * (len(COLUMNS) - 1))
    sql = f"INSERT INTO feedback ({', '.join(COLUMNS[1:])}) VALUES ({placeholders})"
    with connect(db, write=True) as conn:
        return [int(conn.execute(sql, _row(item)).lastrowid) for item in items]


def insert(db: str | os.PathLike | None, item: dict[str, Any]) -> int:
    """Store one item (one short transaction); return its id."""
    return insert_many(db, [item])[0]


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    item = dict(row)
    for key in _JSON_COLUMNS:
        if item.get(key) is not None:
            item[key] = json.loads(item[key])
    return item


def select(
    db: str | os.PathLike | None = None, *, ids: Sequence[int] | None = None, model: str | None = None,
    verdict: str | None = None, limit: int | None = None,
) -> list[dict[str, Any]]:
    """Items (as dicts, oldest first) matching every filter given."""
    where, args = [], []
    if ids is not None:
        where.append(f"id IN ({', '.join('?' * len(ids))})")
        args.extend(int(i) for i in ids)
    if model is not None:
        where.append("model = ?")
        args.append(model)
    if verdict is not None:
        where.append("verdict = ?")
        args.append(verdict)
    sql = "SELECT * FROM feedback" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with connect(db) as conn:
        return [_decode(r) for r in conn.execute(sql, args).fetchall()]


def get(db: str | os.PathLike | None, item_id: int) -> dict[str, Any]:
    """One item by id.

    Raises:
        InputError: no item has that id.

    """
    found = select(db, ids=[item_id])
    if not found:
        raise InputError(f"no feedback item has id {item_id!r}; list them with `whyllm feedback list`")
    return found[0]


def delete(db: str | os.PathLike | None, ids: Sequence[int]) -> list[int]:
    """Remove the items with these ids (all or none); return the ids removed.

    Raises:
        InputError: an id does not exist (nothing is removed).

    """
    ids = [int(i) for i in ids]
    with connect(db, write=True) as conn:
        marks = ", ".join("?" * len(ids))
        found = {r[0] for r in conn.execute(f"SELECT id FROM feedback WHERE id IN ({marks})", ids)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise InputError(f"no feedback item has id {missing[0]!r}; nothing was removed")
        conn.execute(f"DELETE FROM feedback WHERE id IN ({marks})", ids)
    return ids
