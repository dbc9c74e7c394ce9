"""Cost of parameter attribution (default model) and training-data attribution (a recall run).

Usage::

    python bench/params_influence.py            # both, each in a fresh process; a table
    python bench/params_influence.py --json     # one JSON document
    python bench/params_influence.py --only params

``params``: Gemma 3 270M on a short and a 60-token prompt. The group table (one forward and one
backward, ``check=False``) and the check (every group rescaled, the top units zeroed; batched
forwards) are timed apart, in forward-equivalents: best time / best time of a plain forward pass
(``model(input_ids)``) in the same process. Memory: peak resident set minus the set before.

``influence``: a key-value recall run with 1,000 training examples and 11 checkpoints (10 TracIn
intervals) is trained once (cached under ``/tmp/whyllm-bench-influence``); whyllm's TracIn over all
1,000 examples x 10 checkpoints is timed and compared with the naive loop (one backward and one
flattened full gradient per example per checkpoint), timed on the first 100 examples and scaled by
10, after checking both give the same scores there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _internals_peers import PeakRSS, measure  # noqa: E402

SHORT = "The capital of France is"
LONG = ("The history of Paris spans more than two thousand years. It began as a settlement of the Parisii, "
        "a Celtic people, on an island in the Seine, and grew under Roman rule into the town of")
RUN = Path("/tmp/whyllm-bench-influence/recall-1000")


def bench_params() -> dict:
    import torch

    import whyllm
    from whyllm.methods.params import params

    model = whyllm.load_model(progress=False)
    out = {}
    for name, prompt in (("short", SHORT), ("long", LONG)):
        ids = model.encode(prompt)

        def forward(ids=ids):
            with torch.no_grad():
                model.hf(input_ids=ids, use_cache=False)

        table = measure(lambda p=prompt: params(model, p, check=False).seconds, forward, reps=3)
        t0 = time.perf_counter()
        res = params(model, prompt, top_k=5)
        out[name] = {
            "tokens": ids.shape[1], "forward_s": table["forward_seconds"], "table_s": table["seconds"],
            "table_fwd_eq": table["fwd_eq"], "table_extra_mb": table["extra_mb"],
            "check_s": res.seconds["check"], "check_fwd_eq": res.seconds["check"] / table["forward_seconds"],
            "total_s": time.perf_counter() - t0, "groups": len(res.groups),
            "scale_invariant": len(res.scale_invariant), "correlation": res.correlation,
            "n_correlated": res.n_correlated, "unit_correlation": res.unit_correlation,
        }
    return out


def _recall_run() -> Path:
    from whyllm.training import checkpoints, train

    try:
        if len(checkpoints(RUN)) == 11:
            return RUN
    except Exception:  # noqa: BLE001  (no run yet)
        pass
    train("recall", out=RUN, n_examples=1000, steps=300, checkpoint_every=30, batch_size=32, lr=1e-3, seed=0)
    return RUN


def bench_influence() -> dict:
    import torch

    from whyllm.training import checkpoints, load_examples
    from whyllm.training.influence import _intervals, tracin_reference, tracin_scores

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    run = _recall_run()
    train_s = time.perf_counter() - t0
    ckpts = checkpoints(run)
    paths, weights = [p for _, p in ckpts[:-1]], _intervals([s for s, _ in ckpts], 1e-3)
    examples = load_examples(run)
    text = examples[0]["text"]
    prompt, target = text.rsplit(" ", 2)[0], " " + text.split()[-2]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        fast = tracin_scores(paths, weights, examples, prompt, target)
        fast_s = time.perf_counter() - t0
    with PeakRSS() as naive_mem:
        t0 = time.perf_counter()
        naive = tracin_reference(paths, weights, examples[:100], prompt, target)
        naive_100_s = time.perf_counter() - t0
    same = float((fast[:100] - naive).abs().max() / naive.abs().max())
    return {
        "examples": len(examples), "checkpoints": len(paths), "train_s": train_s, "seconds": fast_s,
        "extra_mb": mem.peak - mem.base, "naive_seconds_estimate": naive_100_s * len(examples) / 100,
        "naive_extra_mb": naive_mem.peak - naive_mem.base,
        "speedup": naive_100_s * len(examples) / 100 / fast_s, "max_relative_difference": same,
        "top_example": int(fast.argmax()),
    }


def _child(task: str) -> dict:
    path = str(HERE.parent / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, __file__, "--child", task], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path}, check=False)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=("params", "influence"))
    parser.add_argument("--child", choices=("params", "influence"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"params": bench_params, "influence": bench_influence}[args.child]()))
        return
    tasks = [args.only] if args.only else ["params", "influence"]
    out = {t: _child(t) for t in tasks}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    if "params" in out and "error" not in out["params"]:
        for name, r in out["params"].items():
            print(f"params {name} ({r['tokens']} tokens): forward {r['forward_s']:.2f} s; group table "
                  f"{r['table_s']:.2f} s = {r['table_fwd_eq']:.1f} fwd-eq (+{r['table_extra_mb']:.0f} MB); "
                  f"check {r['check_s']:.1f} s = {r['check_fwd_eq']:.0f} fwd-eq; {r['groups']} groups, "
                  f"{r['scale_invariant']} scale-invariant; r = {r['correlation']:.4f} over "
                  f"{r['n_correlated']}")
    if "influence" in out and "error" not in out["influence"]:
        r = out["influence"]
        print(f"influence: {r['examples']} examples x {r['checkpoints']} checkpoints in {r['seconds']:.1f} s "
              f"(+{r['extra_mb']:.0f} MB); naive loop ~{r['naive_seconds_estimate']:.0f} s "
              f"(+{r['naive_extra_mb']:.0f} MB): {r['speedup']:.1f}x faster; same scores within "
              f"{r['max_relative_difference']:.1e}")
    for t, r in out.items():
        if "error" in r:
            print(f"{t}: failed: {r['error']}")


if __name__ == "__main__":
    main()
