"""Exactly-once resume: a batch SIGKILLed at random moments, then resumed, equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from whyllm.batch import batch, read_table
from whyllm.batch.io import done_keys

RUNS = ["predict", "explain:occlusion"]
# The child runs the real CLI with one thread (as the reference does) and a slow rename, so that a kill
# often lands while a part is half-written (its temp file exists, its final name does not).
CHILD = """
import sys, time, torch
torch.set_num_threads(1)
import whyllm.batch.io as io
class _Slow:
    def __getattr__(self, name):
        return getattr(__import__("os"), name)
    def replace(self, a, b):
        time.sleep(0.05)
        __import__("os").replace(a, b)
io.os = _Slow()
from whyllm.cli import app
sys.argv = ["whyllm", *sys.argv[1:]]
app()
"""


def _input(path: Path) -> Path:
    words = ["Paris", "Mary", "John", "dog", "store", "capital", "Rome", "Alice", "Bob", "drink"]
    rows = [
        {
            "id": f"q{i}",
            "prompt": f"When {words[i % 10]} and {words[(i * 3) % 10]} went to the "
            + "store " * (i % 4)
            + "the",
            "target": " " + words[(i * 7) % 10],
        }
        for i in range(60)
    ]
    rows[5]["prompt"] = ""  # error rows are rows too: written once, kept on resume
    rows[9]["target"] = ""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _start(model: Path, src: Path, out: Path) -> subprocess.Popen:
    args = [
        "batch",
        str(src),
        *[a for r in RUNS for a in ("--run", r)],
        "--out",
        str(out),
        "-m",
        str(model),
        "--chunk",
        "3",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3] / "src")}
    log = open(out.parent / "child.log", "ab")  # noqa: SIM115 (closed by the test after wait)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], env=env, stdout=subprocess.DEVNULL, stderr=log
    )
    log.close()
    return proc


def _kill_at(proc: subprocess.Popen, out: Path, rng: random.Random, mode: str) -> None:
    """SIGKILL ``proc`` at a random moment of one kind; each kind lets little work finish first.

    "early" lands anywhere from start-up (imports, model load, manifest) until this attempt's first part
    is committed; "delay" lands shortly after it is committed, so every test sees progress; "during-write"
    lands while the temp file of one of this attempt's first three parts exists.
    """
    deadline = time.monotonic() + 60
    before = set(out.glob("parts/part-*"))

    def committed() -> bool:
        return set(out.glob("parts/part-*")) > before

    if mode == "early":
        until = time.monotonic() + rng.uniform(0.0, 8.0)
        while time.monotonic() < until and proc.poll() is None and not committed():
            time.sleep(0.005)
    elif mode == "delay":
        while time.monotonic() < deadline and proc.poll() is None and not committed():
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
    else:
        skip, seen = rng.randrange(3), set()
        while time.monotonic() < deadline and proc.poll() is None:
            temps = {p.name for p in out.glob("parts/.tmp-*")}
            if temps - seen and len(seen | temps) > skip:
                break
            seen |= temps
            time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _same(a, b) -> bool:
    """Exactly equal, a missing value (None or NaN) equal to a missing value."""
    return (
        (pd.isna(a) and pd.isna(b))
        if not isinstance(a, str) and pd.isna(a) or not isinstance(b, str) and pd.isna(b)
        else a == b
    )


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(saved_model, tmp_path):
    from whyllm import load_model

    src = _input(tmp_path / "in.jsonl")
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    out = tmp_path / "killed"
    kills, attempts, total = [], 0, 60 * len(RUNS)
    modes = ["early", "delay", "during-write", "delay", "during-write"]
    rng.shuffle(modes)
    while len(kills) < 5 and attempts < 12:
        mode = modes[attempts % len(modes)]
        attempts += 1
        proc = _start(saved_model, src, out)
        _kill_at(proc, out, rng, mode)
        finished = len(done_keys(out)) if out.exists() else 0
        if proc.returncode == -signal.SIGKILL and finished < total:
            kills.append((mode, finished))
            if finished:  # what is there always reads back whole, each key once
                assert not read_table(out).duplicated(["id", "method", "parameters"]).any()
    assert len(kills) >= 5, f"seed {seed}: only {kills} kills landed before the run ended"
    assert any(0 < k[1] for k in kills), f"seed {seed}: no kill landed after the first part: {kills}"
    assert sorted(k[1] for k in kills) == [k[1] for k in kills], f"seed {seed}: progress went back: {kills}"
    proc = _start(saved_model, src, out)
    assert proc.wait(timeout=300) == 0, (tmp_path / "child.log").read_text(errors="replace")[-2000:]
    assert not list((out / "parts").glob(".tmp-*"))

    ref_out = tmp_path / "reference"
    batch(src, RUNS, ref_out, model=load_model(str(saved_model)), chunk=3)
    got, ref = read_table(out), read_table(ref_out)
    assert len(got) == total and not got.duplicated(["id", "method", "parameters"]).any(), f"seed {seed}"
    assert (got["status"] == "error").sum() == 2 * len(RUNS)
    cols = sorted(c for c in ref.columns if c != "seconds")
    assert sorted(c for c in got.columns if c != "seconds") == cols
    bad = [c for c in cols if not all(_same(a, b) for a, b in zip(got[c], ref[c], strict=True))]
    assert not bad, f"seed {seed}, kills {kills}: columns differ: {bad}"
