"""Cost of the internals analyses on the default model, beside TransformerLens and nnsight.

Usage::

    python bench/internals.py                 # table (whyllm, then the peers if their venv exists)
    python bench/internals.py --json          # one JSON document
    python bench/internals.py --no-peers      # whyllm only
    python bench/internals.py --only lens_grid patch_resid

Every analysis runs in its own fresh process (so peak memory is its own): the model is loaded, a
plain forward pass of the same prompt (``model(input_ids)``, all-position logits) is timed, then the
analysis. Costs are in forward-equivalents: best analysis time / best forward time in that process,
which cancels most of the machine's speed at that moment (other jobs share these CPUs: timings are
noisy). Memory is the peak resident set during the analysis minus the resident set before it.

Peers run in a separate virtual environment (default ``/tmp/peers-venv``, with ``torch``,
``transformer-lens`` and ``nnsight``) from ``bench/_internals_peers.py``, on the same local converted
model folder, offline. The time ratio is peer forward-equivalents / whyllm forward-equivalents; the
value difference is the largest absolute difference of the probabilities (lens) or recovered shares
(patching) they compute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _internals_peers import measure  # noqa: E402

IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to")
FACT = "The capital of France is"
PARAGRAPH = (
    "The history of Paris spans more than two thousand years. It began as a settlement of the Parisii, "
    "a Celtic people, on an island in the Seine, and grew under Roman rule into the town of Lutetia. In "
    "the Middle Ages it became the capital of the kings of France and one of the largest cities in Europe, "
    "home to a great cathedral, a university and busy markets. Revolutions, wars and the rebuilding of the "
    "nineteenth century gave the city its wide boulevards, parks and railway stations, and made it a "
    "centre of art and science. "
)
WHYLLM_TASKS = ("lens_grid", "lens_last", "dla", "attention", "patch_resid", "patch_heads", "atp_resid",
                "atp_heads", "trace")
PEER_TASKS = (("tl", "lens_grid"), ("tl", "lens_last"), ("nnsight", "lens_grid"), ("nnsight", "patch_resid"))


def make_spec() -> dict:
    """Prompts as text and ids (a 128-token text that tokenizes back to itself), targets, model folder."""
    from whyllm import load_model
    from whyllm.model.load import cache_dir

    model = load_model(progress=False)
    ids = model.encode(PARAGRAPH * 4)[0].tolist()[:128]
    text = model.tokenizer.decode(ids[1:])
    assert model.encode(text)[0].tolist() == ids, "the 128-token prompt does not tokenize back to itself"
    folder = next(p for p in (cache_dir() / "models").iterdir() if p.is_dir())
    return {
        "model": str(folder), "long_text": text, "long_ids": ids, "long_target_text": " the",
        "long_target": model.encode_continuation(" the")[0], "ioi": list(IOI),
        "ioi_ids": model.encode(IOI[0])[0].tolist(), "mary": model.encode_continuation(" Mary")[0],
        "john": model.encode_continuation(" John")[0], "threads": 1,
    }


def _lens_values(r) -> dict:
    return {k: getattr(r, k).tolist() for k in ("top_ids", "top_probs", "target_probs")}


def whyllm_task(task: str, spec: dict) -> dict:
    """Run one analysis (child process)."""
    import torch

    import whyllm
    from whyllm.methods.attention import attention
    from whyllm.methods.components import components
    from whyllm.methods.lens import logit_lens
    from whyllm.methods.patching import patch
    from whyllm.methods.tracing import causal_trace

    torch.set_num_threads(spec["threads"])
    m = whyllm.load_model(progress=False)
    long_prompt = task.startswith("lens")
    ids = torch.tensor([spec["long_ids"] if long_prompt else spec["ioi_ids"]])
    if task == "trace":
        ids = m.encode(FACT)

    def forward():
        with torch.no_grad():
            m.hf(input_ids=ids)

    io = {"target": " Mary", "foil": " John"}
    text, tgt = spec["long_text"], spec["long_target_text"]
    runs = {
        "lens_grid": lambda: _lens_values(logit_lens(m, text, target=tgt)),
        "lens_last": lambda: _lens_values(logit_lens(m, text, target=tgt, positions=[-1])),
        "dla": lambda: {"total": components(m, IOI[0], **io).total},
        "attention": lambda: {"shape": list(attention(m, IOI[0]).patterns.shape)},
        "patch_resid": lambda: _grid(patch(m, *IOI, **io)),
        "patch_heads": lambda: _grid(patch(m, *IOI, component="head", **io)),
        "atp_resid": lambda: _grid(patch(m, *IOI, method="attribution", **io)),
        "atp_heads": lambda: _grid(patch(m, *IOI, component="head", method="attribution", **io)),
        "trace": lambda: _grid(causal_trace(m, FACT, target=" Paris", subject="France")),
    }
    reps = {"lens_grid": 2, "patch_resid": 2, "trace": 1}.get(task, 3)
    return measure(runs[task], forward, reps)


def _grid(r) -> dict:
    return {"grid": r.grid.tolist(), "clean": r.clean, "corrupted": r.corrupted}


def _child(cmd: list[str]) -> dict | None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    line = next((s for s in reversed(proc.stdout.splitlines()) if s.startswith("RESULT ")), None)
    if line is None:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
    return json.loads(line[len("RESULT "):])


def _max_diff(a, b) -> float:
    import torch

    return float((torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)).abs().max())


def compare(mine: dict, theirs: dict) -> dict:
    """Largest value differences between two results of the same task."""
    v, w = mine["values"], theirs["values"]
    if "grid" in v:
        return {"max_diff_grid": _max_diff(v["grid"], w["grid"])}
    same_top = sum(a == b for ra, rb in zip(v["top_ids"], w["top_ids"], strict=True)
                   for a, b in zip(ra, rb, strict=True))
    cells = sum(len(r) for r in v["top_ids"])
    return {"max_diff_target_prob": _max_diff(v["target_probs"], w["target_probs"]),
            "max_diff_top_probs": _max_diff(v["top_probs"], w["top_probs"]),
            "same_top_k_cells": f"{same_top}/{cells}"}


def _best(old: dict | None, new: dict | None) -> dict | None:
    if not old or "error" in old:
        return new
    if not new or "error" in new:
        return old
    return new if new["seconds"] < old["seconds"] else old


def _run_all(args, payload: str, peers_ok: bool) -> tuple[dict, dict]:
    mine: dict = {}
    theirs: dict = {}
    for _ in range(args.rounds):  # alternate whyllm and peers; keep each one's best run
        for t in WHYLLM_TASKS:
            if not args.only or t in args.only:
                mine[t] = _best(mine.get(t), _child([sys.executable, __file__, "--child", t, payload]))
        for lib, t in PEER_TASKS if peers_ok else ():
            if not args.only or t in args.only:
                res = _child([args.peers_python, str(HERE / "_internals_peers.py"), lib, t, payload])
                theirs[f"{lib}:{t}"] = _best(theirs.get(f"{lib}:{t}"), res)
    return mine, theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--peers-python", default="/tmp/peers-venv/bin/python")
    ap.add_argument("--rounds", type=int, default=2, help="run everything this many times; keep the best")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--child", nargs=2, metavar=("TASK", "SPEC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(whyllm_task(args.child[0], json.loads(args.child[1]))))
        return
    spec = make_spec()
    peers_ok = not args.no_peers and Path(args.peers_python).exists()
    mine, theirs = _run_all(args, json.dumps(spec), peers_ok)
    out: dict = {"whyllm": mine, "peers": theirs, "threads": spec["threads"]}
    if not peers_ok and not args.no_peers:
        out["peers_note"] = f"{args.peers_python} not found: TransformerLens and nnsight were not run"
    for key, res in theirs.items():
        ref = mine.get(key.split(":")[1])
        if res and "error" not in res and ref and "error" not in ref:
            res["vs_whyllm"] = {"time_ratio": res["seconds"] / ref["seconds"],
                                "cpu_time_ratio": res["cpu_seconds"] / ref["cpu_seconds"],
                                "fwd_eq_vs_whyllm_forward": res["seconds"] / ref["forward_seconds"],
                                "memory_ratio": res["extra_mb"] / max(ref["extra_mb"], 1.0),
                                **compare(ref, res)}
    for group in (mine, theirs):
        for res in group.values():
            if isinstance(res, dict):
                res.pop("values", None)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    _table(out)


def _table(out: dict) -> None:
    print(f"{'analysis':<22}{'seconds':>9}{'fwd s':>8}{'fwd-eq':>8}{'cpu-eq':>8}{'extra MB':>10}  notes")
    rows = [(f"whyllm {t}", r) for t, r in out["whyllm"].items()] + [(k, r) for k, r in out["peers"].items()]
    for name, r in rows:
        if "error" in r:
            print(f"{name:<22} failed: {r['error']}")
            continue
        notes = ""
        if "vs_whyllm" in r:
            notes = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in r["vs_whyllm"].items())
        print(f"{name:<22}{r['seconds']:>9.2f}{r['forward_seconds']:>8.3f}{r['fwd_eq']:>8.1f}"
              f"{r['fwd_eq_cpu']:>8.1f}{r['extra_mb']:>10.0f}  {notes}")
    if "peers_note" in out:
        print(out["peers_note"])


if __name__ == "__main__":
    main()
