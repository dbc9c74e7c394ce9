"""One-shot GPU benchmark on a larger randomly initialised Llama-shaped model.

Run where a GPU is lent: ``python bench/gpu.py [--layers 16 --d-model 2048]``. Prints JSON lines:
model load parity (device and device_map paths), forward time, whyllm attribution methods in
forward-equivalents next to Captum's LLM attribution on the same model, prompt, target and steps, and
peak GPU memory of each (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

CUDA = torch.cuda.is_available()


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _timed(fn, repeat: int = 3) -> tuple[float, float]:
    """Best wall time over ``repeat`` runs (after one warm-up) and the peak GPU memory in GiB."""
    fn()
    _sync()
    best = float("inf")
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if CUDA else 0
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t)
    return best, ((torch.cuda.max_memory_allocated() - base) / 2**30 if CUDA else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--d-model", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument(
        "--max-memory-gib",
        type=float,
        nargs="+",
        default=[1.0],
        help="whyllm's activation-memory cap per chunk; each value is benchmarked",
    )
    args = ap.parse_args()

    import transformers as T

    from whyllm import load_model
    from whyllm.methods.attribution import explain
    from whyllm.model.tiny import tiny_tokenizer

    def out(**kv):
        print(json.dumps(kv), flush=True)

    out(
        device=torch.cuda.get_device_name(0) if CUDA else "cpu",
        torch=torch.__version__,
        transformers=T.__version__,
    )
    tok = tiny_tokenizer()
    cfg = T.LlamaConfig(
        hidden_size=args.d_model,
        num_hidden_layers=args.layers,
        num_attention_heads=16,
        num_key_value_heads=8,
        intermediate_size=int(2.75 * args.d_model),
        vocab_size=args.vocab,
        max_position_embeddings=4096,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    hf = T.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    n_params = sum(p.numel() for p in hf.parameters())
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        tok.save_pretrained(d)
        t = time.perf_counter()
        model = load_model(d, device="cuda" if CUDA else "cpu")
        out(step="load device=cuda + parity", seconds=round(time.perf_counter() - t, 2), params=n_params)
        t = time.perf_counter()
        m2 = load_model(d, device_map="auto" if CUDA else None)
        out(step="load device_map=auto + parity", seconds=round(time.perf_counter() - t, 2))
        del m2
    del hf
    if CUDA:
        torch.cuda.empty_cache()

    words = ("When Mary and John went to the store, John gave a drink to Mary. " * 40).split()
    prompt = " ".join(words)
    ids = model.tokenizer(prompt)["input_ids"][: args.tokens]
    prompt = model.tokenizer.decode(ids[1:])
    x = model.encode(prompt)
    out(step="prompt", tokens=int(x.shape[1]))

    def forward():
        with torch.no_grad():
            model.hf(input_ids=x, logits_to_keep=1)

    fwd, fwd_mem = _timed(forward, 5)
    out(step="forward", ms=round(fwd * 1e3, 2), peak_gib=round(fwd_mem, 3))

    for cap in args.max_memory_gib:
        for method, kw in [
            ("integrated_gradients", {"steps": args.steps}),
            ("occlusion", {}),
            ("input_x_gradient", {}),
            ("saliency", {}),
        ]:
            try:
                budget = int(cap * 2**30)
                sec, mem = _timed(
                    lambda m=method, k=kw, b=budget: explain(
                        model, prompt, target=" Mary", method=m, faithfulness=False, max_memory=b, **k
                    ),
                    2,
                )
                out(
                    step=f"whyllm {method}",
                    max_memory_gib=cap,
                    fwd_equiv=round(sec / fwd, 1),
                    seconds=round(sec, 3),
                    peak_gib=round(mem, 2),
                )
            except Exception as e:  # report and continue: one method failing must not hide the others
                out(step=f"whyllm {method}", error=f"{type(e).__name__}: {e}")
    sec, mem = _timed(
        lambda: explain(model, prompt, target=" Mary", method="integrated_gradients", steps=args.steps), 2
    )
    out(
        step="whyllm integrated_gradients + faithfulness",
        fwd_equiv=round(sec / fwd, 1),
        peak_gib=round(mem, 2),
    )

    try:
        from captum.attr import (
            FeatureAblation,
            LayerIntegratedGradients,
            LLMAttribution,
            LLMGradientAttribution,
            TextTokenInput,
        )

        inp = TextTokenInput(prompt, model.tokenizer)
        lig = LLMGradientAttribution(LayerIntegratedGradients(model.hf, model.adapter.embed), model.tokenizer)
        sec, mem = _timed(lambda: lig.attribute(inp, target=" Mary", n_steps=args.steps), 2)
        out(step="captum LayerIntegratedGradients", fwd_equiv=round(sec / fwd, 1), peak_gib=round(mem, 2))
        fa = LLMAttribution(FeatureAblation(model.hf), model.tokenizer)
        sec, mem = _timed(lambda: fa.attribute(inp, target=" Mary"), 2)
        out(step="captum FeatureAblation", fwd_equiv=round(sec / fwd, 1), peak_gib=round(mem, 2))
    except Exception as e:
        out(step="captum", error=f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
