"""Batch engine throughput: packed predict vs a naive loop, occlusion, write/resume overhead, memory.

    WHYLLM_CACHE=/work/cache/whyllm PYTHONPATH=src python bench/batch.py [--model NAME] [--rows 500]
        [--occlusion-rows 40] [--memory-rows 10000] [--ray]

Prints one JSON document (each section also on stderr as it ends). Same process, same model, same
threads for every measurement:
- ``predict``: rows/s of ``whyllm.predict`` one prompt at a time vs ``whyllm.batch(..., ["predict"])``
  on the bundled prompt set (src/whyllm/batch/data/prompts.jsonl);
- ``occlusion``: the same for ``explain:occlusion`` on the first ``--occlusion-rows`` prompts;
- ``overhead``: seconds spent writing parts and planning a resume, as a share of compute;
- ``memory``: resident memory after 500 rows and at the end of ``--memory-rows`` rows (tiny model);
- ``ray`` (with ``--ray``): the same predict batch on a local Ray with the machine's CPUs (default
  actors), its time cut into Ray's start, the driver's model load, the actors' start-up and the steady
  rate once they run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import whyllm
from whyllm.batch import engine as engine_mod
from whyllm.batch import io as io_mod
from whyllm.batch import read_input

DATA = Path(__file__).parents[1] / "src/whyllm/batch/data/prompts.jsonl"


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _subset(rows: list[dict], n: int, folder: Path) -> Path:
    path = folder / f"rows{n}.jsonl"
    path.write_text(
        "".join(json.dumps({k: r[k] for k in ("id", "prompt", "target")}) + "\n" for r in rows[:n])
    )
    return path


def naive(model, rows: list[dict], run) -> float:
    """Seconds for a one-prompt-at-a-time loop."""
    t0 = time.perf_counter()
    for r in rows:
        run(model, r)
    return time.perf_counter() - t0


def timed_batch(model, src: Path, runs: list[str], out: Path) -> dict:
    """One embedded batch run, with the time spent computing units and writing parts split out."""
    spent = {"compute": 0.0, "write": 0.0}
    run_unit, write_part = engine_mod.run_unit, io_mod.write_part

    def counting(fn, key):
        def wrapped(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t0

        return wrapped

    import whyllm.batch.embedded as emb

    emb.run_unit, emb.write_part = counting(run_unit, "compute"), counting(write_part, "write")
    try:
        s = whyllm.batch(src, runs, out, model=model)
    finally:
        emb.run_unit, emb.write_part = run_unit, write_part
    t0 = time.perf_counter()
    again = whyllm.batch(src, runs, out, model=model)  # everything done: the resume bookkeeping alone
    resume = time.perf_counter() - t0
    assert again.done == 0
    return {
        "seconds": s.seconds,
        "rows": s.done,
        "errors": s.errors,
        "rows_per_s": s.done / s.seconds,
        **spent,
        "resume_seconds": resume,
    }


def bench_predict(model, rows, src, tmp) -> dict:
    naive_s = naive(model, rows, lambda m, r: whyllm.predict(m, r["prompt"], target=r["target"]))
    b = timed_batch(model, src, ["predict"], tmp / "predict")
    return {
        "rows": len(rows),
        "naive_rows_per_s": len(rows) / naive_s,
        "batch": b,
        "speedup": b["rows_per_s"] / (len(rows) / naive_s),
    }


def bench_occlusion(model, rows, src, tmp) -> dict:
    naive_s = naive(
        model, rows, lambda m, r: whyllm.explain(m, r["prompt"], target=r["target"], method="occlusion")
    )
    b = timed_batch(model, src, ["explain:occlusion"], tmp / "occlusion")
    return {
        "rows": len(rows),
        "naive_rows_per_s": len(rows) / naive_s,
        "batch": b,
        "speedup": b["rows_per_s"] / (len(rows) / naive_s),
    }


def bench_memory(n: int, tmp: Path) -> dict:
    from whyllm.model.tiny import tiny_model

    model = tiny_model("llama")
    src = tmp / "memory.jsonl"
    src.write_text(
        "".join(json.dumps({"prompt": f"The capital of country number {i} is"}) + "\n" for i in range(n))
    )
    marks = {}

    def progress(done: int, total: int) -> None:
        if done >= 500 and "after_500" not in marks:
            marks["after_500"] = rss_mb()

    s = whyllm.batch(src, ["predict"], tmp / "memory", model=model, progress=progress)
    marks["end"] = rss_mb()
    return {
        "rows": s.done,
        "rss_mb_after_500": marks["after_500"],
        "rss_mb_end": marks["end"],
        "growth": marks["end"] / marks["after_500"] - 1,
        "rows_per_s": s.rows_per_second,
    }


def bench_ray(model_name: str | None, src: Path, tmp: Path, embedded_rows_per_s: float) -> dict:
    """A local Ray run of ``predict``, its wall time cut into Ray's start, the driver's model load (for the
    manifest), the actors' start-up (process, imports, model load, first unit) and the steady rate."""
    from whyllm.batch.ray_engine import _start

    t0 = time.perf_counter()
    _start(None, None)
    init = time.perf_counter() - t0
    marks: list[tuple[float, int]] = []
    t1 = time.perf_counter()
    s = whyllm.batch(src, ["predict"], tmp / "ray", model=model_name, engine="ray",
                     progress=lambda done, total: marks.append((time.perf_counter() - t1, done)))
    wall = time.perf_counter() - t1
    begun = marks[0][0]  # progress(0, total): the driver has loaded the model and planned the units
    first_t, first_n = next((t, n) for t, n in marks if n > 0)
    steady = (s.done - first_n) / (marks[-1][0] - first_t) if marks[-1][0] > first_t else float("nan")
    return {
        "rows": s.done,
        "ray_start_s": init,
        "driver_model_load_s": begun,
        "actor_startup_and_first_unit_s": first_t - begun,
        "rest_s": marks[-1][0] - first_t,
        "rows_per_s_incl_startup": s.done / (init + wall),
        "rows_per_s_after_planning": s.rows_per_second,
        "steady_rows_per_s": steady,
        "ratio_to_embedded": s.rows_per_second / embedded_rows_per_s,
        "steady_ratio_to_embedded": steady / embedded_rows_per_s,
    }


def main() -> None:
    """Run the benchmarks and print one JSON document."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--occlusion-rows", type=int, default=40)
    p.add_argument("--memory-rows", type=int, default=10000)
    p.add_argument("--ray", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: shared cores are faster so)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="whyllm-bench-batch-"))
    try:
        model = whyllm.load_model(a.model)
        rows = read_input(DATA)
        report = {"model": model.name, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
        report["predict"] = bench_predict(model, rows[: a.rows], _subset(rows, a.rows, tmp), tmp)
        print(json.dumps({"predict": report["predict"]}), file=sys.stderr, flush=True)
        if a.occlusion_rows:
            occ = rows[:: max(1, len(rows) // a.occlusion_rows)][: a.occlusion_rows]
            report["occlusion"] = bench_occlusion(model, occ, _subset(occ, len(occ), tmp), tmp)
            print(json.dumps({"occlusion": report["occlusion"]}), file=sys.stderr, flush=True)
        if a.memory_rows:
            report["memory"] = bench_memory(a.memory_rows, tmp)
        if a.ray:
            report["ray"] = bench_ray(
                a.model, _subset(rows, a.rows, tmp), tmp, report["predict"]["batch"]["rows_per_s"]
            )
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
