"""Train a causal LM from random initialisation, checkpointing into a run directory.

The loop is the standard PyTorch one (AdamW, gradient clipping, a warm-up-then-constant learning
rate): with models this small the per-step overhead of a framework trainer would cost more than
the step itself, and checkpoints here are Hugging Face ``save_pretrained`` folders written
atomically, which every whyllm command loads (``--model RUN/checkpoint-500``).

Batches come only from the run's finite example set (``examples.jsonl``): the examples are dealt
in epochs, each epoch a permutation of the kept examples drawn from ``random.Random(seed * 1_000_003
+ epoch)``, so a step's batch is a pure function of the settings and a retrain without some
examples (``exclude=``) is reproducible. The model's initial weights depend only on ``seed``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from whyllm.errors import InputError
from whyllm.results.training import FRONTIER, TrainResult
from whyllm.training import run_dir as rd
from whyllm.training.data import PAD, Dataset, make_dataset
from whyllm.training.presets import build_config, freeze_mlps_, get_preset, new_model

__all__ = ["batch_indices", "evaluate_batch", "retrain", "train"]

log = logging.getLogger(__name__)
Progress = Callable[[int, int, dict[str, float]], None]
# Settings that must match to resume a run (``steps`` may grow).
_SAME = ("task", "preset", "family", "seed", "checkpoint_every", "batch_size", "lr", "warmup", "seq_len",
         "n_examples", "data_arg", "exclude", "weight_decay", "vocab_size")


class _Sampler:
    """Batches of a run: epochs of seeded permutations of the kept examples (one shuffle per epoch)."""

    def __init__(self, n_examples: int, batch_size: int, seed: int, exclude: Iterable[int] = ()):
        gone = set(exclude)
        self.kept = [i for i in range(n_examples) if i not in gone]
        if not self.kept:
            raise InputError(f"exclude removes all {n_examples} examples; nothing is left to train on")
        self.batch_size, self.seed = batch_size, seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            if len(self._orders) > 2:
                self._orders.pop(min(self._orders))
            order = self.kept.copy()
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._orders[epoch] = order
        return self._orders[epoch]

    def __call__(self, step: int) -> list[int]:
        out, pos, n = [], step * self.batch_size, len(self.kept)
        while len(out) < self.batch_size:
            epoch, offset = divmod(pos, n)
            take = self._order(epoch)[offset:offset + self.batch_size - len(out)]
            out += take
            pos += len(take)
        return out


def batch_indices(n_examples: int, batch_size: int, seed: int, step: int,
                  exclude: Iterable[int] = ()) -> list[int]:
    """Example indices of the batch at ``step`` (0-based) of a run with these settings.

    Examples are dealt in epochs; epoch ``e`` is the kept examples (all minus ``exclude``) shuffled
    by ``random.Random(seed * 1_000_003 + e)``.
    """
    return _Sampler(n_examples, batch_size, seed, exclude)(step)


def evaluate_batch(model: torch.nn.Module, ids: torch.Tensor, *, chunk: int = 64) -> dict[str, float]:
    """Loss and accuracy of ``model`` on ``ids`` ``(batch, pos)``, all and in-context (second half).

    In-context means predictions of positions in the second half of the sequence, where the
    earlier half can help (for induction: the repeats). Padding is ignored.
    """
    sums = torch.zeros(4)  # loss, correct (all); loss, correct (second half)
    counts = torch.zeros(2)
    half = ids.shape[1] // 2
    device = next(model.parameters()).device
    with torch.no_grad():
        for part in ids.to(device).split(chunk):
            logits = model(input_ids=part, use_cache=False).logits[:, :-1].float()  # (batch, pos-1, vocab)
            gold = part[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), gold, reduction="none")
            right = (logits.argmax(-1) == gold).float()
            mask = gold != PAD
            late = mask.clone()
            late[:, : half - 1] = False  # predictions of positions >= half
            for k, m in enumerate((mask, late)):
                sums[2 * k] += loss[m].sum().item()
                sums[2 * k + 1] += right[m].sum().item()
                counts[k] += m.sum().item()
    c = counts.clamp(min=1)
    return {"loss": float(sums[0] / c[0]), "accuracy": float(sums[1] / c[0]),
            "in_context_loss": float(sums[2] / c[1]), "in_context_accuracy": float(sums[3] / c[1])}


def _check_resume(run: dict[str, Any], want: dict[str, Any], out: Path) -> None:
    args = run.get("args", {})
    diff = [f"{k}: {args.get(k)!r} there, {want[k]!r} now" for k in want if args.get(k) != want[k]]
    if diff:
        raise InputError(f"{str(out)!r} already holds a run with other settings ({'; '.join(diff)}); "
                         "give the same settings to resume it, or another --out for a new run")


def _write_examples(out: Path, ds: Dataset) -> None:
    def rows(examples: list[list[int]]) -> list[dict[str, Any]]:
        return [{"index": i, "input_ids": ids, "text": ds.text(ids[1:])} for i, ids in enumerate(examples)]

    rd.write_jsonl_atomic(out / "examples.jsonl", rows(ds.examples))
    rd.write_jsonl_atomic(out / "eval.jsonl", rows(ds.eval_examples))


def _save(out: Path, step: int, model, tokenizer, opt, sched, history: dict[str, Any]) -> None:
    """Write ``checkpoint-<step>`` atomically: a hidden temporary folder, then a rename."""
    from whyllm.model.gguf_cache import transformers_quiet

    final, tmp = out / f"checkpoint-{step}", out / f"{rd.TMP_PREFIX}checkpoint-{step}.{os.getpid()}"
    with transformers_quiet():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": torch.get_rng_state(), "step": step}, tmp / "training_state.pt")
    rd.write_json_atomic(tmp / "trainer_state.json", {"step": step, **history})
    if final.exists():  # a rerun of a step (resume after a kill between rename and run.json)
        shutil.rmtree(final)
    os.replace(tmp, final)


def _load(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    import json

    from transformers import AutoModelForCausalLM

    from whyllm.model.gguf_cache import transformers_quiet

    with transformers_quiet():
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    state = torch.load(path / "training_state.pt", weights_only=True, map_location="cpu")
    history = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    return model, {"state": state, "history": history}


def train(
    task: str = "induction",
    *,
    out: str | Path,
    data: str | None = None,
    preset: str = "tiny",
    family: str = "llama",
    steps: int = 1000,
    checkpoint_every: int = 100,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 1e-3,
    warmup: int = 0,
    weight_decay: float = 0.01,
    seq_len: int | None = None,
    n_examples: int | None = None,
    vocab_size: int = 2048,
    exclude: Iterable[int] = (),
    threads: int | None = 1,
    device: str = "cpu",
    progress: Progress | None = None,
) -> TrainResult:
    """Train a causal LM from random initialisation and checkpoint it into ``out``.

    Resumes when ``out`` holds an unfinished run with the same settings (a larger ``steps``
    continues a finished one).

    Args:
        task: ``induction``, ``copy``, ``recall`` or ``text`` (see :mod:`whyllm.training.data`).
        out: run directory (created).
        data: for ``text``: a ``.txt``/``.jsonl``/``.parquet`` file, a folder, or ``python-docs``.
        preset: model shape (:data:`whyllm.training.presets.PRESETS`).
        family: Hugging Face config family (default Llama-shaped).
        steps: optimizer steps in total.
        checkpoint_every: save ``checkpoint-<step>`` every this many steps (and at 0 and the end).
        seed: seeds the data, the initial weights and the batch order.
        batch_size: examples per step.
        lr: AdamW learning rate (constant after ``warmup`` linear warm-up steps).
        warmup: warm-up steps.
        weight_decay: AdamW weight decay.
        seq_len: tokens per example (task default when ``None``).
        n_examples: size of the finite training set (synthetic default 4096; text: all chunks).
        vocab_size: BPE vocabulary size for ``text``.
        exclude: example indices to leave out (retraining for training-data attribution).
        threads: ``torch.set_num_threads`` while training (1 suits tiny models); ``None`` leaves it.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (not part of the run's settings: a run
            may resume on another device).
        progress: called after every step with ``(step, steps, stats)``.

    Returns:
        A :class:`TrainResult` (loss curves, tokens/s, compute).
    """
    for name, value in (("steps", steps), ("checkpoint_every", checkpoint_every), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise InputError(f"lr must be positive, got {lr!r}")
    get_preset(preset)
    out = Path(out)
    want = dict(task=task, preset=preset, family=family, seed=seed, checkpoint_every=checkpoint_every,
                batch_size=batch_size, lr=lr, warmup=warmup, seq_len=seq_len, n_examples=n_examples,
                data=data, exclude=sorted(int(i) for i in exclude), weight_decay=weight_decay,
                vocab_size=vocab_size)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        from whyllm.model.load import _resolve_device

        return _run(out, want, steps, progress, torch.device(_resolve_device(device)))
    finally:
        torch.set_num_threads(old_threads)


def retrain(run_dir: str | Path, *, out: str | Path, exclude: Iterable[int] = (), steps: int | None = None,
            device: str = "cpu", progress: Progress | None = None) -> TrainResult:
    """Train again with ``run_dir``'s settings minus the examples ``exclude`` (same init, same order)."""
    args = dict(rd.read_run(run_dir)["args"])
    args["exclude"] = set(args["exclude"]) | set(exclude)
    return train(**args, out=out, steps=steps or rd.read_run(run_dir)["steps"], progress=progress,
                 device=device)


def _prepare(out: Path, want: dict[str, Any], steps: int) -> tuple[dict[str, Any], Dataset, Path | None, int]:
    """Start a new run or reopen one: run.json, dataset, checkpoint to resume from and its step."""
    from whyllm import __version__

    if (out / "run.json").is_file() and any(out.glob("checkpoint-*")):
        run = rd.read_run(out)
        _check_resume(run, want, out)
        rd.clean_partial(out)
        step, path = rd.latest_checkpoint(out)
        from transformers import AutoTokenizer

        from whyllm.model.gguf_cache import transformers_quiet

        with transformers_quiet():
            tok = AutoTokenizer.from_pretrained(path)
        examples = [r["input_ids"] for r in rd.load_examples(out)]
        top = max(max(e) for e in examples)
        if top >= len(tok):
            raise InputError(f"the tokenizer in {str(path)!r} ({len(tok)} tokens) does not match the run's "
                             f"examples (ids up to {top}); the run directory is damaged")
        held = [r["input_ids"] for r in rd.load_eval_examples(out)]
        run["steps"] = steps
        return run, Dataset(examples, held, tok, run["data"]), path, step
    ours = {"examples.jsonl", "eval.jsonl"}  # a run killed before its run.json was written
    if out.exists() and not (out / "run.json").is_file() \
            and any(not p.name.startswith(rd.TMP_PREFIX) and p.name not in ours for p in out.iterdir()):
        raise InputError(f"{str(out)!r} exists and is not a whyllm run; give an empty or new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    rd.clean_partial(out)
    ds = make_dataset(want["task"], data=want["data"], n_examples=want["n_examples"], seed=want["seed"],
                      seq_len=want["seq_len"], vocab_size=want["vocab_size"])
    bad = [i for i in want["exclude"] if not 0 <= i < len(ds.examples)]
    if bad:
        raise InputError(f"exclude holds indices outside 0..{len(ds.examples) - 1}: {bad[:5]}")
    run = {"whyllm_version": __version__, **{k: want[k] for k in (
               "task", "preset", "family", "seed", "checkpoint_every", "batch_size", "lr", "warmup",
               "weight_decay", "exclude")},
           "steps": steps, "seq_len": len(ds.examples[0]), "data": ds.info, "n_examples": len(ds.examples),
           "n_eval": len(ds.eval_examples),
           "sampling": "epochs of permutations of the kept examples (all minus exclude), epoch e shuffled "
                       "with random.Random(seed * 1000003 + e): whyllm.training.batch_indices(n_examples, "
                       "batch_size, seed, step, exclude)",
           "args": want, "completed_steps": 0}
    _write_examples(out, ds)
    rd.write_json_atomic(out / "run.json", run)
    return run, ds, None, 0




def _result(out: Path, run: dict[str, Any], history: dict[str, Any], n_params: int,
            session: dict) -> TrainResult:
    from whyllm.results.base import meta

    done = run["completed_steps"]
    tokens = done * run["batch_size"] * run["seq_len"]
    return TrainResult(
        run_dir=str(out), task=run["task"], preset=run["preset"], family=run["family"], n_params=n_params,
        steps=run["steps"], completed_steps=done, resumed_from=session["start"], batch_size=run["batch_size"],
        seq_len=run["seq_len"], tokens=tokens, flops=6.0 * n_params * tokens,
        tokens_per_s=session["tokens"] / session["train_s"] if session["train_s"] else 0.0,
        wall_s=session["wall_s"], train_s=session["train_s"], checkpoint_s=session["checkpoint_s"],
        eval_s=session["eval_s"], train_loss=tuple(history["train_loss"]), evals=tuple(history["evals"]),
        checkpoints=tuple(s for s, _ in rd.checkpoints(out)), frontier=dict(FRONTIER),
        meta=meta(f"{run['preset']} ({run['family']})", "train", task=run["task"], seed=run["seed"],
                  lr=run["lr"], batch_size=run["batch_size"], steps=run["steps"]),
    )


def _run(out: Path, want: dict[str, Any], steps: int, progress: Progress | None,
         device: torch.device) -> TrainResult:
    wall = time.perf_counter()
    run, ds, path, start = _prepare(out, want, steps)
    preset = get_preset(run["preset"])
    cfg = build_config(preset, vocab_size=len(ds.tokenizer), n_ctx=run["seq_len"], family=run["family"])
    if path is None:
        model = new_model(cfg, run["seed"], attention_only=preset.d_mlp == 0)
        history = {"train_loss": [], "evals": []}
    else:
        model, saved = _load(path)
        if preset.d_mlp == 0:
            freeze_mlps_(model)
        history = {k: saved["history"][k] for k in ("train_loss", "evals")}
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=run["lr"], weight_decay=run["weight_decay"])
    warm = run["warmup"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    if path is not None:
        opt.load_state_dict(saved["state"]["optimizer"])
        sched.load_state_dict(saved["state"]["scheduler"])
        torch.set_rng_state(saved["state"]["rng"])
    n_params = sum(p.numel() for p in trainable)
    data = torch.tensor(ds.examples, device=device)  # (examples, pos)
    held = torch.tensor(ds.eval_examples, device=device)
    sampler = _Sampler(len(ds.examples), run["batch_size"], run["seed"], run["exclude"])
    session = {"start": start, "tokens": 0, "train_s": 0.0, "checkpoint_s": 0.0, "eval_s": 0.0}

    def checkpoint(step: int) -> None:
        t = time.perf_counter()
        model.eval()
        history["evals"].append({"step": step, **evaluate_batch(model, held)})
        model.train()
        session["eval_s"] += time.perf_counter() - t
        t = time.perf_counter()
        _save(out, step, model, ds.tokenizer, opt, sched, history)
        run["completed_steps"] = step
        rd.write_json_atomic(out / "run.json", run)
        session["checkpoint_s"] += time.perf_counter() - t

    if path is None:
        checkpoint(0)
    model.train()
    flops_per_step = 6.0 * n_params * run["batch_size"] * run["seq_len"]
    for step in range(start, steps):
        batch = data[sampler(step)]  # (batch, pos)
        t = time.perf_counter()
        loss = model(input_ids=batch, labels=batch.masked_fill(batch == PAD, -100), use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        value = loss.item()
        session["train_s"] += time.perf_counter() - t
        session["tokens"] += batch.numel()
        history["train_loss"].append(value)
        if not math.isfinite(value):
            raise InputError(f"the training loss became {value} at step {step + 1}; "
                             f"lower --lr (now {run['lr']})")
        done = step + 1
        if done % run["checkpoint_every"] == 0 or done == steps:
            checkpoint(done)
        if progress is not None:
            progress(done, steps, {"loss": value, "tokens_per_s": session["tokens"] / session["train_s"],
                                   "flops": flops_per_step * done})
    session["wall_s"] = time.perf_counter() - wall
    return _result(out, run, history, n_params, session)
