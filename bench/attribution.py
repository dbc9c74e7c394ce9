"""Attribution cost in forward-equivalents, side by side with Captum and Inseq.

Usage::

    python bench/attribution.py                      # default model (Gemma 3 270M), 16 and 128 tokens
    python bench/attribution.py --inseq-python /tmp/inseq-venv/bin/python   # also Inseq (own venv)
    python bench/attribution.py --model random-llama --device cuda --lengths 128   # where a GPU is lent
    python bench/attribution.py --json out.json      # also write every row

Each measurement runs in its own subprocess on CPU (so its peak memory, ``ru_maxrss``, is its own;
on CUDA, ``torch.cuda.max_memory_allocated`` after a reset). It builds a prompt of exactly N
tokens, takes the model's greedy next token as the target, times one plain forward pass
(``model.hf(input_ids)``: all logits, no gradients; best of 3 after a warm-up) and then the
attribution once. ``fwd-eq`` = attribution time / forward time; on CPU it is also given from process
CPU time (``cpu-eq``), which is steadier on a shared machine.

Every tool gets the same model, prompt, target, baseline (whyllm's default baseline token in every
position but BOS) and, for integrated gradients, the same 32 Gauss-Legendre steps:

* whyllm ``explain`` (faithfulness off; the ``+faith`` rows turn it on), and the per-token matrix
  of a 16-token continuation;
* Captum 0.9 ``LLMGradientAttribution(LayerIntegratedGradients)`` and ``LLMAttribution(FeatureAblation)``
  on ``TextTokenInput(baselines=<token>, skip_tokens=[bos])``. Captum runs all IG steps in one batch
  by default; at 128 tokens on Gemma that needs ~13 GB (full-vocabulary logits at every position),
  so on CPU ``--captum-ig-batch`` (default 4; 0 = Captum's default, one batch) caps its
  ``internal_batch_size`` there;
* Inseq 0.7 (``--inseq-python``: a separate environment), integrated gradients and occlusion, offline
  from the converted model folder, with its own defaults (zero baseline for IG, occlusion by
  sliding window), so only its cost is compared.

Memory: on CPU, the process's resident memory sampled every 2 ms during the attribution (``peak``)
and its rise over what the process held before it (``extra``: the model and runtime excluded); on
a GPU, ``torch.cuda.max_memory_allocated``. ``max|diff|`` compares per-token attributions with
whyllm's (BOS left out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
WHYLLM = ("integrated_gradients", "input_x_gradient", "saliency", "occlusion", "attention",
          "attention_rollout", "context_ablation", "integrated_gradients+faith", "occlusion+faith",
          "per_token:integrated_gradients", "per_token:input_x_gradient", "per_token:occlusion")
_MODELS: dict = {}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss() -> int:
    """Resident memory now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """Highest resident memory while the block runs, sampled every 2 ms by a thread.

    (``ru_maxrss`` cannot be reset, and model loading peaks above most attributions.)
    """

    def __enter__(self):
        import threading

        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _load(name: str, device: str):
    if (name, device) in _MODELS:
        return _MODELS[(name, device)]
    from whyllm import load_model

    if name == "default":
        model = load_model(progress=False, device=device)
    else:  # a larger randomly initialised Llama-shaped model (timings do not depend on the weights)
        import torch
        import transformers as T

        from whyllm.model.base import Model
        from whyllm.model.tiny import tiny_tokenizer

        cfg = T.LlamaConfig(hidden_size=2048, num_hidden_layers=16, num_attention_heads=16,
                            num_key_value_heads=8, intermediate_size=5632, vocab_size=32000,
                            max_position_embeddings=4096,
                            pad_token_id=0, bos_token_id=1, eos_token_id=2)
        torch.manual_seed(0)
        hf = T.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).to(device)
        model = Model(hf=hf, tokenizer=tiny_tokenizer(), name="random-llama-1b")
    _MODELS[(name, device)] = model
    return model


def _prompt(model, length: int) -> str:
    """Text whose encoding (BOS included) is exactly ``length`` tokens."""
    ids = model.tokenizer(TEXT * 8, add_special_tokens=False)["input_ids"]
    for cut in range(length - 1, length + 4):
        text = model.tokenizer.decode(ids[:cut])
        if model.encode(text).shape[1] == length:
            return text
    raise RuntimeError(f"could not build a {length}-token prompt")


def _clean_top(model, logits) -> int:
    """The likeliest token that decodes to whole characters and encodes back to itself."""
    for tid in logits[: len(model.tokenizer)].argsort(descending=True).tolist():
        text = model.tokenizer.decode([tid])
        if "\ufffd" not in text and model.tokenizer(text, add_special_tokens=False)["input_ids"] == [tid]:
            return int(tid)
    raise RuntimeError("no clean target token")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _measure(spec: dict) -> dict:
    import torch

    from whyllm.methods.attribution.baselines import _default_token

    torch.set_num_threads(spec["threads"])
    dev = spec["device"]
    model = _load(spec["model"], dev)
    prompt = _prompt(model, spec["length"])
    ids = model.encode(prompt)
    env = {"base_id": _default_token(model), "bos": model.tokenizer.bos_token_id, "prompt": prompt}
    with torch.no_grad():
        logits = model.hf(input_ids=ids, logits_to_keep=1).logits[0, -1]
        env["target_id"] = _clean_top(model, logits)
        fwd = []
        for _ in range(4):
            _sync(dev)
            w, c = time.perf_counter(), _cpu()
            model.hf(input_ids=ids)
            _sync(dev)
            fwd.append((time.perf_counter() - w, _cpu() - c))
        fwd_w, fwd_c = min(fwd[1:])
    env["target"] = model.tokenizer.decode([env["target_id"]])
    cuda = dev.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    base_mem = torch.cuda.memory_allocated() if cuda else 0
    _sync(dev)
    with _PeakRss() as rss:
        w, c = time.perf_counter(), _cpu()
        scores = (_whyllm if spec["tool"] == "whyllm" else _captum)(model, env, spec)
        _sync(dev)
        wall, cpu = time.perf_counter() - w, _cpu() - c
    peak = torch.cuda.max_memory_allocated() if cuda else rss.peak
    extra = peak - base_mem if cuda else rss.peak - rss.start
    with torch.no_grad():  # the forward again, after: the best of all runs is the least disturbed
        for _ in range(2):
            _sync(dev)
            t, c = time.perf_counter(), _cpu()
            model.hf(input_ids=ids)
            _sync(dev)
            fwd_w, fwd_c = min((fwd_w, fwd_c), (time.perf_counter() - t, _cpu() - c))
    return {**spec, "length": int(ids.shape[1]), "seconds": wall, "fwd_s": fwd_w, "fwd_equiv": wall / fwd_w,
            "cpu_equiv": cpu / fwd_c if not cuda and fwd_c > 0 else None, "peak_mb": peak / 2**20,
            "extra_mb": extra / 2**20, "scores": scores, "target": env["target"],
            "prompt": prompt}


def _whyllm(model, env: dict, spec: dict) -> list[float] | None:
    import torch

    from whyllm.methods.attribution import explain

    method, faith = spec["method"].removesuffix("+faith"), spec["method"].endswith("+faith")
    kwargs = {"steps": spec["steps"]} if "integrated_gradients" in method else {}
    with torch.no_grad():  # the peers' baseline (the default token) for every method, occlusion included
        kwargs["baseline"] = model.adapter.embed(torch.tensor([[env["base_id"]]], device=model.device))[0, 0]
    if method.startswith("per_token:"):
        cont = model.tokenizer.decode(model.tokenizer(" " + TEXT, add_special_tokens=False)["input_ids"][:16])
        explain(model, env["prompt"], target=cont, per_token=True, method=method.split(":")[1],
                faithfulness=False, **kwargs)
        return None
    r = explain(model, env["prompt"], target=env["target"], method=method, faithfulness=faith, **kwargs)
    return r.token_scores[1:].tolist()


def _captum(model, env: dict, spec: dict) -> list[float]:
    import torch
    from captum.attr import (
        FeatureAblation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        TextTokenInput,
    )

    inp = TextTokenInput(env["prompt"], model.tokenizer, baselines=env["base_id"], skip_tokens=[env["bos"]])
    target = torch.tensor([env["target_id"]])
    if spec["method"] == "integrated_gradients":
        lig = LLMGradientAttribution(LayerIntegratedGradients(model.hf, model.adapter.embed), model.tokenizer)
        res = lig.attribute(inp, target=target, n_steps=spec["steps"], method="gausslegendre",
                            internal_batch_size=spec.get("captum_batch"))
    else:
        res = LLMAttribution(FeatureAblation(model.hf), model.tokenizer).attribute(inp, target=target)
    return res.seq_attr.float().tolist()


_INSEQ = r"""
import json, os, sys, threading, time, torch
torch.set_num_threads(int(sys.argv[4]))
import inseq
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
path, method, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
m = inseq.load_model(path, method)
kw = {"n_steps": spec["steps"]} if method == "integrated_gradients" else {}
base = peak = rss()
stop = threading.Event()
def watch():
    global peak
    while not stop.wait(0.002):
        peak = max(peak, rss())
th = threading.Thread(target=watch, daemon=True); th.start()
t = time.perf_counter()
m.attribute(input_texts=spec["prompt"], generated_texts=spec["prompt"] + spec["target"], show_progress=False,
            **kw)
sec = time.perf_counter() - t
stop.set(); th.join()
print(json.dumps({"seconds": sec, "extra_mb": peak - base, "peak_mb": peak}))
"""


def _inseq(python: str, method: str, row: dict) -> dict:
    from whyllm.model.load import cache_dir

    folder = next(p for p in sorted((cache_dir() / "models").iterdir()) if p.is_dir())
    spec = json.dumps({"steps": row["steps"], "prompt": row["prompt"], "target": row["target"]})
    proc = subprocess.run([python, "-c", _INSEQ, str(folder), method, spec, str(row["threads"])],
                          capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    base = {k: row[k] for k in ("model", "device", "length", "steps", "threads", "fwd_s")}
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {**base, "tool": "inseq", "method": method, "error": err}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**base, "tool": "inseq", "method": method, **out, "fwd_equiv": out["seconds"] / row["fwd_s"]}


def _run(spec: dict, in_process: bool) -> dict:
    if in_process:
        try:
            return _measure(spec)
        except Exception as e:  # report and go on: one failure must not hide the other rows
            return {**spec, "error": f"{type(e).__name__}: {e}"}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return {**spec, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _specs(args) -> list[dict]:
    specs = []
    for n in args.lengths:
        common = {"model": args.model, "device": args.device, "length": n, "steps": args.steps,
                  "threads": args.threads}
        specs += [{"tool": "whyllm", "method": m, **common} for m in WHYLLM]
        if not args.no_captum:
            cap = args.captum_ig_batch or None if n > 64 and args.device == "cpu" else None
            specs.append({"tool": "captum", "method": "integrated_gradients", "captum_batch": cap, **common})
            specs.append({"tool": "captum", "method": "occlusion", **common})
    return specs


def _table(rows: list[dict]) -> list[str]:
    ours = {(r["method"], r["length"]): r for r in rows if r["tool"] == "whyllm" and "error" not in r}
    lines = [f"{'tool':7} {'method':31} {'tok':>4} {'sec':>7} {'fwd-eq':>7} {'cpu-eq':>7} {'peak MB':>8} "
             f"{'extra MB':>8} {'/whyllm':>8} {'max|diff|':>9}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['tool']:7} {r['method']:31} {r['length']:>4} error: {r['error']}")
            continue
        mine = ours.get((r["method"], r["length"])) if r["tool"] != "whyllm" else None
        ratio = f"{r['seconds'] / mine['seconds']:.1f}x" if mine else ""
        a, b = r.get("scores"), (mine or {}).get("scores")
        same = a and b and len(a) == len(b)
        diff = f"{max(abs(x - y) for x, y in zip(a, b, strict=True)):.1e}" if same else ""
        cpu = f"{r['cpu_equiv']:.1f}" if r.get("cpu_equiv") else ""
        lines.append(f"{r['tool']:7} {r['method']:31} {r['length']:>4} {r['seconds']:>7.2f} "
                     f"{r['fwd_equiv']:>7.1f} {cpu:>7} {r['peak_mb']:>8.0f} {r['extra_mb']:>8.0f} {ratio:>8} "
                     f"{diff:>9}")
    for n in sorted({r["length"] for r in rows}):
        for m in ("integrated_gradients", "input_x_gradient", "occlusion"):
            single, per = ours.get((m, n)), ours.get((f"per_token:{m}", n))
            if single and per:
                lines.append(f"per-token matrix (16 output tokens), {n}-token prompt, {m}: "
                             f"{per['seconds'] / single['seconds']:.1f}x one single-token attribution")
        for m in ("integrated_gradients", "occlusion"):
            off, on = ours.get((m, n)), ours.get((m + "+faith", n))
            if off and on:
                extra = (on["seconds"] - off["seconds"]) / off["seconds"]
                lines.append(f"faithfulness metrics with {m}, {n} tokens: {extra:.2f}x the attribution")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker")
    ap.add_argument("--model", default="default", choices=["default", "random-llama"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lengths", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--captum-ig-batch", type=int, default=4)
    ap.add_argument("--no-captum", action="store_true")
    ap.add_argument("--only", nargs="*", help="only these whyllm methods (and the peers)")
    ap.add_argument("--inseq-python", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_measure(json.loads(args.worker))))
        return
    in_process = args.device != "cpu"  # GPU memory is measured per call; CPU memory needs a process each
    rows = []
    for spec in _specs(args):
        if args.only and spec["tool"] == "whyllm" and spec["method"] not in args.only:
            continue
        rows.append(_run(spec, in_process))
        shown = {k: v for k, v in rows[-1].items() if k not in ("scores", "prompt")}
        print(json.dumps(shown), file=sys.stderr, flush=True)
        if args.inseq_python and spec["tool"] == "captum" and "error" not in rows[-1]:
            method = "integrated_gradients" if spec["method"] == "integrated_gradients" else "occlusion"
            rows.append(_inseq(args.inseq_python, method, rows[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print("\n".join(_table(rows)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
