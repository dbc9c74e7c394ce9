"""Training and emergence benchmark: ``python bench/training.py [--steps N]``.

Measures, on one CPU thread (the setting for tiny models):

* ``whyllm.train`` throughput against a plain PyTorch loop (same config, data, batch, optimizer);
* the share of wall time spent writing checkpoints (20 checkpoints per run);
* ``whyllm.emerge`` over 20 checkpoints against the same analyses of one checkpoint.

Runs alternate (plain, whyllm, plain, whyllm...) and the best of each is kept, because the machine
is shared and timings drift.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from whyllm.training import train
from whyllm.training.data import PAD, make_dataset
from whyllm.training.emerge import emerge
from whyllm.training.presets import build_config, get_preset, new_model


def plain_loop(preset: str, steps: int, batch_size: int, seed: int = 0) -> float:
    """Tokens/s of the textbook loop: random batches, forward with labels, backward, clip, AdamW."""
    ds = make_dataset("induction", seed=seed)
    cfg = build_config(get_preset(preset), vocab_size=len(ds.tokenizer), n_ctx=len(ds.examples[0]))
    model = new_model(cfg, seed, attention_only=get_preset(preset).d_mlp == 0)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    data = torch.tensor(ds.examples)
    gen = torch.Generator().manual_seed(seed)
    tokens, elapsed = 0, 0.0
    for _ in range(steps):
        batch = data[torch.randint(len(data), (batch_size,), generator=gen)]
        t = time.perf_counter()
        loss = model(input_ids=batch, labels=batch.masked_fill(batch == PAD, -100), use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        elapsed += time.perf_counter() - t
        tokens += batch.numel()
    return tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    every = max(1, args.steps // 20)
    plain, ours, share, end_to_end = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            if r % 2 == 0:  # alternate which goes first: the shared machine's load drifts
                plain.append(plain_loop(args.preset, args.steps, args.batch_size))
            res = train("induction", out=Path(tmp) / f"run{r}", preset=args.preset, steps=args.steps,
                        checkpoint_every=every, batch_size=args.batch_size)
            ours.append(res.tokens_per_s)
            share.append(res.checkpoint_share)
            end_to_end.append(res.tokens / res.wall_s)
            if r % 2 == 1:
                plain.append(plain_loop(args.preset, args.steps, args.batch_size))
        run = Path(tmp) / "run0"
        n_ckpt = len(res.checkpoints)
        last = res.checkpoints[-1]
        one, many = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            emerge(run, steps=[last], ablate=False)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            emerge(run, steps=list(res.checkpoints[-20:]), ablate=False)
            many.append(time.perf_counter() - t)
        t = time.perf_counter()
        emerge(run, steps=list(res.checkpoints[-20:]))
        with_ablation = time.perf_counter() - t
    print(f"preset {args.preset}: {res.n_params:,} parameters, batch {args.batch_size} x {res.seq_len} "
          f"tokens, {args.steps} steps, {n_ckpt} checkpoints, 1 thread")
    runs = ", ".join(f"{x:,.0f}" for x in plain)
    print(f"plain PyTorch loop     {max(plain):>10,.0f} tokens/s  (runs: {runs})")
    runs = ", ".join(f"{x:,.0f}" for x in ours)
    print(f"whyllm train (steps)   {max(ours):>10,.0f} tokens/s  (runs: {runs})")
    mean = (sum(ours) / len(ours)) / (sum(plain) / len(plain))
    print(f"ratio                  {max(ours) / max(plain):>10.3f}  best of each; {mean:.3f} of the means "
          "(goal >= 0.9)")
    print(f"whyllm train end to end {max(end_to_end):>9,.0f} tokens/s (data, init, evaluation, checkpoints)")
    print(f"checkpoint share of wall time {100 * min(share):.2f}% (runs: "
          f"{', '.join(f'{100 * x:.2f}%' for x in share)}; goal <= 5%)")
    print(f"emerge, 1 checkpoint   {min(one):.3f} s")
    print(f"emerge, 20 checkpoints {min(many):.3f} s = {min(many) / min(one):.1f}x one (goal <= 25x); "
          f"with head ablation {with_ablation:.3f} s")


if __name__ == "__main__":
    main()
