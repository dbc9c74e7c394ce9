"""The same internals analyses in TransformerLens (TransformerBridge) and nnsight, for bench/internals.py.

Runs in a separate virtual environment holding those libraries (it imports nothing from whyllm):

    /tmp/peers-venv/bin/python bench/_internals_peers.py LIB TASK SPEC_JSON

and prints one JSON line: seconds, forward seconds, peak memory and the values computed. Also holds
what the whyllm side shares with it (timing, memory sampling), using only the standard library and torch.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import torch

K = 5


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Sample RSS every 2 ms while the block runs; ``peak`` and ``base`` in MB."""

    def __enter__(self):
        self.base = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def measure(task, forward, reps: int) -> dict:
    """Best-of-``reps`` wall and CPU times of ``task`` and ``forward`` (interleaved); memory of run 1."""
    forward()  # warm-up
    forward()
    fwd = [_time(forward) for _ in range(3)]
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        values = task()
        runs = [(time.perf_counter() - t0, time.process_time() - c0)]
    for _ in range(reps - 1):
        runs.append(_time(task))
        fwd.append(_time(forward))
    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    fwall, fcpu = min(f[0] for f in fwd), min(f[1] for f in fwd)
    return {"seconds": wall, "cpu_seconds": cpu, "forward_seconds": fwall, "forward_cpu_seconds": fcpu,
            "fwd_eq": wall / fwall, "fwd_eq_cpu": cpu / fcpu, "peak_mb": mem.peak,
            "extra_mb": mem.peak - mem.base, "values": values}


def _time(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _lens_values(probs_fn, n_layers: int, target: int) -> dict:
    """Top-k, target probability per (layer, pos), one layer at a time from ``probs_fn(layer)``."""
    top_ids, top_probs, target_probs = [], [], []
    for layer in range(n_layers):
        probs = probs_fn(layer)  # (pos, vocab)
        top = probs.topk(K, dim=-1)
        top_ids.append(top.indices.tolist())
        top_probs.append(top.values.tolist())
        target_probs.append(probs[:, target].tolist())
    return {"top_ids": top_ids, "top_probs": top_probs, "target_probs": target_probs}


# ---- TransformerLens ---------------------------------------------------------------------------
def tl_task(task: str, spec: dict):
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(spec["model"], device="cpu", dtype=torch.float32)
    ids = torch.tensor([spec["long_ids"]])

    def forward():
        with torch.no_grad():
            bridge.original_model(input_ids=ids)

    if task == "lens_grid":
        def run():
            with torch.no_grad():
                _, cache = bridge.run_with_cache(ids)
                acc = cache.accumulated_resid(apply_ln=True)  # (layer + 1, 1, pos, d_model)
                probs = bridge.unembed(acc)[:, 0].softmax(-1)  # (layer + 1, pos, vocab): TL's usual recipe
                return _lens_values(lambda i: probs[i], probs.shape[0], spec["long_target"])

        return measure(run, forward, reps=2)
    if task == "lens_last":
        def run():
            with torch.no_grad():
                _, cache = bridge.run_with_cache(ids)
                acc = cache.accumulated_resid(apply_ln=True, pos_slice=-1)  # (layer + 1, 1, d_model)
                probs = bridge.unembed(acc[:, :, None])[:, 0].softmax(-1)  # (layer + 1, 1, vocab)
                return _lens_values(lambda i: probs[i], probs.shape[0], spec["long_target"])

        return measure(run, forward, reps=3)
    raise SystemExit(f"unknown TransformerLens task {task!r}")


# ---- nnsight ------------------------------------------------------------------------------------
def nnsight_task(task: str, spec: dict):
    from nnsight import LanguageModel

    model = LanguageModel(spec["model"], device_map="cpu", dispatch=True, dtype=torch.float32)
    layers = model.model.layers
    n = len(layers)
    if task == "lens_grid":
        ids = torch.tensor([spec["long_ids"]])

        def forward():
            with torch.no_grad():
                model._module(input_ids=ids)

        def run():
            # the nnsight tutorial's logit lens, reduced to top-k and the target inside the trace
            with torch.no_grad(), model.trace(ids):
                out = list().save()
                states = [model.model.embed_tokens.output] + [layers[i].output for i in range(n)]
                for h in states:
                    probs = model.lm_head(model.model.norm(h))[0].softmax(-1)
                    top = probs.topk(K, dim=-1)
                    out.append((top.indices, top.values, probs[:, spec["long_target"]]))
            return {"top_ids": [o[0].tolist() for o in out], "top_probs": [o[1].tolist() for o in out],
                    "target_probs": [o[2].tolist() for o in out]}

        return measure(run, forward, reps=2)
    if task == "patch_resid":
        clean, corrupted = spec["ioi"]
        t, f = spec["mary"], spec["john"]
        ids = torch.tensor([spec["ioi_ids"]])

        def forward():
            with torch.no_grad():
                model._module(input_ids=ids)

        def run():
            # clean states and both metrics in one trace, then every patch as one batched trace
            with torch.no_grad():
                with model.trace() as tracer:
                    hs = list().save()
                    lds = list().save()
                    with tracer.invoke(clean):
                        for i in range(n):
                            hs.append(layers[i].input)
                        lg = model.lm_head.output
                        lds.append(lg[0, -1, t] - lg[0, -1, f])
                    with tracer.invoke(corrupted):
                        lg = model.lm_head.output
                        lds.append(lg[0, -1, t] - lg[0, -1, f])
                n_pos = len(spec["ioi_ids"])
                with model.trace() as tracer:
                    out = list().save()
                    for i in range(n):
                        for p in range(n_pos):
                            with tracer.invoke(corrupted):
                                layers[i].input[:, p, :] = hs[i][:, p, :]
                                lg = model.lm_head.output
                                out.append(lg[0, -1, t] - lg[0, -1, f])
            c, k = float(lds[0]), float(lds[1])
            grid = torch.tensor([float(v) for v in out]).reshape(n, n_pos)
            return {"grid": ((grid - k) / (c - k)).tolist(), "clean": c, "corrupted": k}

        return measure(run, forward, reps=1)
    raise SystemExit(f"unknown nnsight task {task!r}")


def main() -> None:
    lib, task, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(spec.get("threads", 1))
    import warnings

    warnings.filterwarnings("ignore")
    result = {"tl": tl_task, "nnsight": nnsight_task}[lib](task, spec)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
