import multiprocessing as mp
import sqlite3

import pytest

from whyllm.errors import InputError
from whyllm.feedback import store
from whyllm.feedback.store import FeedbackStoreError


def _item(i=0, **kw):
    return {"model": "m", "prompt": f"p{i}", "completion": f" c{i}", "verdict": "bad", "source": "api", **kw}


def test_round_trip_and_schema(db):
    ids = store.insert_many(db, [_item(0, correction=" x", settings={"seed": 3}, completion_ids=[1, 2]),
                                 _item(1, verdict="good")])
    got = store.select(db)
    assert [g["id"] for g in got] == ids
    assert got[0]["settings"] == {"seed": 3} and got[0]["completion_ids"] == [1, 2]
    assert got[0]["correction"] == " x" and got[1]["verdict"] == "good"
    assert store.select(db, verdict="good")[0]["id"] == ids[1]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_remove_is_all_or_none(db):
    ids = store.insert_many(db, [_item(0), _item(1)])
    with pytest.raises(InputError, match="999"):
        store.delete(db, [ids[0], 999])
    assert len(store.select(db)) == 2
    assert store.delete(db, [ids[0]]) == [ids[0]]
    assert [g["id"] for g in store.select(db)] == [ids[1]]
    with pytest.raises(InputError, match="no feedback item"):
        store.get(db, ids[0])


def test_bad_item_is_refused_and_nothing_written(db):
    store.insert(db, _item(0))
    with pytest.raises(InputError, match="verdict"):
        store.insert_many(db, [_item(1), _item(2, verdict="meh")])
    assert len(store.select(db)) == 1


def test_older_schema_migrates_newer_is_refused(db, tmp_path):
    sqlite3.connect(db).close()  # an empty file: version 0
    store.insert(db, _item(0))
    assert len(store.select(db)) == 1
    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(FeedbackStoreError, match="newer"):
        store.select(newer)


def test_corrupt_file_is_a_clear_error_and_untouched(tmp_path):
    bad = tmp_path / "bad.sqlite"
    payload = b"this is not a database" * 100
    bad.write_bytes(payload)
    with pytest.raises(FeedbackStoreError, match="not a readable feedback database"):
        store.insert(bad, _item(0))
    assert bad.read_bytes() == payload


def test_locked_database_is_a_clear_error_and_keeps_data(db, monkeypatch):
    store.insert(db, _item(0))
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(FeedbackStoreError, match="locked"):
            store.insert(db, _item(1))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [g["prompt"] for g in store.select(db)] == ["p0"]


def _writer(db, worker, n):
    for i in range(n):
        store.insert(db, _item(i, user=f"w{worker}"))


def test_two_processes_500_writes_each_lose_nothing(db):
    store.select(db)  # create it first
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(db), w, 500)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    got = store.select(db)
    assert len(got) == 1000 and len({g["id"] for g in got}) == 1000
    for w in range(2):
        assert sorted(g["prompt"] for g in got if g["user"] == f"w{w}") == sorted(f"p{i}" for i in range(500))


def test_folder_is_refused(tmp_path):
    with pytest.raises(FeedbackStoreError, match="folder"):
        store.select(tmp_path)
