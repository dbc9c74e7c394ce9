"""Attribution cost in forward-equivalents, side by side with Captum and Inseq, on the default model.

Usage::

    python bench/attribution.py                       # 16- and 128-token prompts, table on stdout
    python bench/attribution.py --lengths 128 --json out.json
    python bench/attribution.py --inseq-python /tmp/inseq-venv/bin/python   # also run Inseq

Every measurement runs in its own subprocess (so its peak memory, ``ru_maxrss``, is its own): load
the model, build a prompt of exactly N tokens, take the model's greedy next token as the target,
time one plain forward pass (``model.hf(input_ids)``, all logits, no gradients; median of 3 after a
warm-up), then time the attribution once. ``fwd-eq`` = attribution time / that forward time.

Same model, prompt, target, baseline (the pad token everywhere but BOS) and steps (32,
Gauss-Legendre) for every tool:

* whyllm ``explain`` (faithfulness off, then on for the "+faith" rows), the per-token matrix of a
  16-token continuation against one single-token attribution;
* Captum ``LLMGradientAttribution(LayerIntegratedGradients)`` and ``LLMAttribution(FeatureAblation)``
  with ``TextTokenInput(baselines=pad, skip_tokens=[bos])``; Captum batches all IG steps by default,
  which at 128 tokens needs ~13 GB (full-vocabulary logits at every position), so ``--captum-ig-batch``
  (default 4 at 128 tokens) caps its ``internal_batch_size`` to keep this shared machine alive;
* Inseq (``--inseq-python``, a separate environment) integrated gradients and occlusion, offline from
  the converted model folder.

``max|diff|`` compares per-token attributions with whyllm's, BOS left out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TEXT = (
    "When Mary and John went to the store, John gave a drink to Mary. The shop was small and crowded, "
    "and the owner, an old man with a grey beard, greeted them by name. Mary wanted apples for a pie; "
    "John wanted bread, cheese and a newspaper. They argued about the price of the apples, then laughed, "
    "paid, and walked home along the river, where the boats were moored for the night. At home, Mary "
    "baked the pie while John read the paper aloud: the council had voted to build a new bridge, the "
    "football club had lost again, and rain was expected for the whole weekend. After dinner they "
    "played cards until late, and John, who always lost, promised to win the next game."
)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prompt(model, length: int) -> str:
    """Text whose encoding (BOS included) is exactly ``length`` tokens."""
    ids = model.tokenizer(TEXT * 4, add_special_tokens=False)["input_ids"]
    for cut in range(length - 1, length + 4):
        text = model.tokenizer.decode(ids[:cut])
        if model.encode(text).shape[1] == length:
            return text
    raise RuntimeError(f"could not build a {length}-token prompt")


def _worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from whyllm import load_model

    model = load_model(progress=False)
    prompt = _prompt(model, spec["length"])
    ids = model.encode(prompt)
    pad, bos = model.tokenizer.pad_token_id, model.tokenizer.bos_token_id
    with torch.no_grad():
        target_id = int(model.hf(input_ids=ids, logits_to_keep=1).logits[0, -1].argmax())
        times = []
        for _ in range(4):
            t = time.perf_counter()
            model.hf(input_ids=ids)
            times.append(time.perf_counter() - t)
        fwd = statistics.median(times[1:])
        t = time.perf_counter()
        model.hf(input_ids=ids, logits_to_keep=1)
        fwd1 = time.perf_counter() - t
    target = model.tokenizer.decode([target_id])
    base_rss = _rss_mb()
    run = _RUNNERS[spec["tool"]]
    t = time.perf_counter()
    scores = run(model, prompt, ids, target, target_id, pad, bos, spec)
    seconds = time.perf_counter() - t
    return {"tool": spec["tool"], "method": spec["method"], "length": int(ids.shape[1]), "seconds": seconds,
            "fwd_s": fwd, "fwd_keep1_s": fwd1, "fwd_equiv": seconds / fwd, "peak_mb": _rss_mb(),
            "extra_mb": _rss_mb() - base_rss, "scores": scores, "target": target, "prompt": prompt}


def _whyllm(model, prompt, ids, target, target_id, pad, bos, spec) -> list[float] | None:
    from whyllm.methods.attribution import explain

    method, faith = spec["method"].removesuffix("+faith"), spec["method"].endswith("+faith")
    kwargs = {"steps": spec["steps"]} if method == "integrated_gradients" else {}
    if method.startswith("per_token:"):
        method = method.split(":")[1]
        cont = model.tokenizer.decode(model.tokenizer(TEXT, add_special_tokens=False)["input_ids"][:16])
        explain(model, prompt, target=cont, per_token=True, method=method, faithfulness=False, **kwargs)
        return None
    r = explain(model, prompt, target=target, method=method, faithfulness=faith, **kwargs)
    return r.token_scores[1:].tolist()


def _captum(model, prompt, ids, target, target_id, pad, bos, spec) -> list[float]:
    import torch
    from captum.attr import (
        FeatureAblation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        TextTokenInput,
    )

    inp = TextTokenInput(prompt, model.tokenizer, baselines=pad, skip_tokens=[bos])
    tgt = torch.tensor([target_id])
    if spec["method"] == "integrated_gradients":
        lig = LLMGradientAttribution(LayerIntegratedGradients(model.hf, model.adapter.embed), model.tokenizer)
        res = lig.attribute(inp, target=tgt, n_steps=spec["steps"], method="gausslegendre",
                            internal_batch_size=spec.get("captum_batch"))
    else:
        res = LLMAttribution(FeatureAblation(model.hf), model.tokenizer).attribute(inp, target=tgt)
    return res.seq_attr.float().tolist()


_INSEQ = r"""
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
import inseq
path, method, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
m = inseq.load_model(path, method)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kw = {"n_steps": spec["steps"], "method": "gausslegendre"} if method == "integrated_gradients" else {}
t = time.perf_counter()
out = m.attribute(input_texts=spec["prompt"], generated_texts=spec["prompt"] + spec["target"],
                  show_progress=False, **kw)
sec = time.perf_counter() - t
seq = out.sequence_attributions[0]
attr = seq.source_attributions if seq.source_attributions is not None else seq.target_attributions
attr = attr.sum(-1) if attr.ndim == 3 else attr  # (tokens, generated)
scores = attr[1:spec["n_prompt"], 0].float().tolist()  # prompt tokens after BOS, first generated token
print(json.dumps({"seconds": sec, "extra_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "scores": scores}))
"""


def _inseq(spec: dict, fwd_s: float, prompt: str, target: str) -> dict:
    from whyllm.model.load import cache_dir

    folder = next(p for p in (cache_dir() / "models").iterdir() if p.is_dir())
    proc = subprocess.run(
        [spec["inseq_python"], "-c", _INSEQ, str(folder), spec["method"],
         json.dumps({"steps": spec["steps"], "prompt": prompt, "target": target, "n_prompt": spec["length"]}),
         str(spec["threads"])],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**out, "fwd_equiv": out["seconds"] / fwd_s}


_RUNNERS = {"whyllm": _whyllm, "captum": _captum}


def _spawn(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {**spec, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _specs(args) -> list[dict]:
    specs = []
    for n in args.lengths:
        common = {"length": n, "steps": args.steps, "threads": args.threads}
        for method in ("integrated_gradients", "input_x_gradient", "saliency", "occlusion", "attention",
                       "attention_rollout", "context_ablation", "integrated_gradients+faith", "occlusion+faith"):
            specs.append({"tool": "whyllm", "method": method, **common})
        specs.append({"tool": "whyllm", "method": "per_token:integrated_gradients", **common})
        specs.append({"tool": "whyllm", "method": "per_token:occlusion", **common})
        if not args.no_captum:
            batch = args.captum_ig_batch if n > 64 else None
            specs.append({"tool": "captum", "method": "integrated_gradients", "captum_batch": batch, **common})
            specs.append({"tool": "captum", "method": "occlusion", **common})
    return specs


def _diff(a: list[float] | None, b: list[float] | None) -> str:
    if not a or not b or len(a) != len(b):
        return ""
    return f"{max(abs(x - y) for x, y in zip(a, b, strict=True)):.2e}"


def _table(rows: list[dict]) -> None:
    ours = {(r["method"], r["length"]): r for r in rows if r.get("tool") == "whyllm" and "error" not in r}
    print(f"{'tool':8} {'method':34} {'tokens':>6} {'seconds':>8} {'fwd-eq':>7} {'peak MB':>8} {'extra MB':>8} "
          f"{'vs whyllm':>9} {'max|diff|':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['tool']:8} {r['method']:34} {r['length']:>6} error: {r['error']}")
            continue
        mine = ours.get((r["method"], r["length"]))
        ratio = f"{r['seconds'] / mine['seconds']:.1f}x" if mine and r["tool"] != "whyllm" else ""
        diff = _diff(r.get("scores"), mine.get("scores")) if mine and r["tool"] != "whyllm" else ""
        print(f"{r['tool']:8} {r['method']:34} {r['length']:>6} {r['seconds']:>8.2f} {r['fwd_equiv']:>7.1f} "
              f"{r['peak_mb']:>8.0f} {r['extra_mb']:>8.0f} {ratio:>9} {diff:>9}")
    for n in sorted({r["length"] for r in rows}):
        single, per = ours.get(("integrated_gradients", n)), ours.get(("per_token:integrated_gradients", n))
        occ, per_occ = ours.get(("occlusion", n)), ours.get(("per_token:occlusion", n))
        if single and per:
            print(f"per-token matrix, 16-token continuation, {n}-token prompt: integrated gradients "
                  f"{per['seconds'] / single['seconds']:.1f}x one single-token attribution"
                  + (f"; occlusion {per_occ['seconds'] / occ['seconds']:.1f}x" if occ and per_occ else ""))
        for m in ("integrated_gradients", "occlusion"):
            off, on = ours.get((m, n)), ours.get((m + "+faith", n))
            if off and on:
                print(f"faithfulness metrics on {m}, {n} tokens: {(on['seconds'] - off['seconds']) / off['seconds']:.2f}"
                      "x the attribution's own time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker")
    ap.add_argument("--lengths", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--captum-ig-batch", type=int, default=4)
    ap.add_argument("--no-captum", action="store_true")
    ap.add_argument("--inseq-python", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    rows = []
    for spec in _specs(args):
        row = _spawn(spec)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "scores"}), file=sys.stderr, flush=True)
        if args.inseq_python and spec["tool"] == "captum" and "error" not in row:
            method = "integrated_gradients" if spec["method"] == "integrated_gradients" else "occlusion"
            out = _inseq({**spec, "method": method, "inseq_python": args.inseq_python}, row["fwd_s"], row["prompt"],
                         row["target"])
            rows.append({**spec, "tool": "inseq", "length": row["length"], "fwd_s": row["fwd_s"], **out})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "scores"}), file=sys.stderr, flush=True)
    _table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
