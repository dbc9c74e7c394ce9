"""The Ray engine on a local 2-CPU Ray: same rows as the embedded engine; a killed actor loses nothing."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from whyllm.batch import batch, read_table

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _actor_pids() -> list[int]:
    """PIDs of this machine's Ray Data actors running whyllm units (their process title names the class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "_UnitWorker" in cmd and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


def test_an_actor_killed_mid_run_loses_and_duplicates_no_row(local_ray, saved_model, tmp_path):
    from whyllm import load_model

    src = tmp_path / "in.jsonl"
    rows = [
        {
            "id": f"q{i}",
            "prompt": "When Mary and John went to the store, John gave a drink to" + " so" * (i % 5),
            "target": " Mary",
        }
        for i in range(48)
    ]
    rows[3]["prompt"] = ""
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "ray"
    killed: list[int] = []

    def killer() -> None:  # wait until parts flow, then SIGKILL one actor process by PID
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not list(out.glob("parts/part-*")):
            time.sleep(0.05)
        pids = _actor_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    thread = threading.Thread(target=killer)
    thread.start()
    summary = batch(
        src,
        ["explain:occlusion"],
        out,
        model=str(saved_model),
        engine="ray",
        actors=2,
        num_cpus=0.5,
        chunk=2,
        timeout=240,
    )
    thread.join()
    assert killed, "no actor process was found to kill"
    assert summary.done == 48 and summary.errors == 1
    got = read_table(out)
    assert len(got) == 48 and not got.duplicated(["id", "method", "parameters"]).any()
    assert sorted(got["id"]) == sorted(r["id"] for r in rows)
    assert not list(out.glob("parts/.tmp-*"))

    ref = tmp_path / "embedded"
    batch(src, ["explain:occlusion"], ref, model=load_model(str(saved_model)), chunk=2)
    want = read_table(ref)
    assert list(got["result"].fillna("")) == list(want["result"].fillna(""))
