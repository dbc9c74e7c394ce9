"""Tune a LoRA adapter on stored feedback with TRL: DPO on pairs, KTO on verdicts, SFT on corrections.

The base model gets a PEFT LoRA adapter (rank 8 on every linear layer by default) and TRL's own
trainer runs on CPU in float32 (``bf16=False, gradient_checkpointing=False, use_cpu=True``). The
reference model of DPO/KTO is the base itself (TRL runs it through the adapter), so one copy of the
weights is held. The output folder holds:

- ``adapter_config.json``, ``adapter_model.safetensors``: the adapter (load with ``--adapter DIR``);
- ``whyllm-tune.json``: base model name and weights fingerprint, method, settings, the feedback ids and
  the training rows built from them, the logged losses and the checkpoints;
- ``checkpoints/step-N/adapter_model.safetensors``: adapter-only snapshots every ``checkpoint_every``
  steps, for training-data attribution (TracIn in :func:`whyllm.diff`);
- ``trainer/``: TRL's latest full checkpoint (optimizer state included), from which an interrupted run
  resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from whyllm.errors import InputError
from whyllm.feedback import formats, store
from whyllm.model.adapters import RECORD_FILE, peft_quiet, weights_hash
from whyllm.model.base import Model
from whyllm.results.base import meta
from whyllm.results.feedback import TuneResult

__all__ = ["METHODS", "tune", "usable_items"]

METHODS = ("dpo", "kto", "sft")


def usable_items(model: Model, db=None, ids=None) -> list[dict[str, Any]]:
    """Stored items about ``model``: same name, and same weights where a fingerprint was recorded."""
    have = weights_hash(model)
    items = store.select(db, ids=ids, model=model.name)
    return [it for it in items if it.get("weights_hash") in (None, have)]


def _choose(method: str | None, items: list[dict[str, Any]]) -> str:
    if method is not None:
        if method not in METHODS:
            raise InputError(f"unknown tuning method {method!r}; choose one of: {', '.join(METHODS)}")
        return method
    if formats.pairs(items):
        return "dpo"
    return "kto" if items else "dpo"


def _rows(model: Model, db, ids, method: str | None) -> tuple[str, list[dict[str, Any]], list[int]]:
    items = usable_items(model, db, ids)
    method = _choose(method, items)
    rows = formats.rows(items, method, conversational=False, with_ids=True)
    if method == "kto" and rows and len({r["label"] for r in rows}) < 2:
        rows = []  # KTO needs both desirable and undesirable examples
    if not rows:
        total = len(store.select(db, ids=ids))
        need = {"dpo": "corrections, or good and bad completions of one prompt",
                "kto": "completions judged good and completions judged bad",
                "sft": "corrections or completions judged good"}[method]
        raise InputError(
            f"no usable feedback for {method} tuning of {model.name!r}: {len(items)} of {total} stored "
            f"item(s) are about this model, and {method} needs {need}; add feedback with "
            "`whyllm feedback add` or choose another --method"
        )
    used = sorted({i for r in rows for i in r["feedback_ids"]})
    return method, rows, used


def _lora_config(rank: int, alpha: float | None):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else 2 * rank, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def _trainer(method: str, peft_model, tokenizer, rows, out: Path, settings: dict[str, Any], callbacks):
    """TRL's trainer for ``method`` on ``rows``, with whyllm's CPU defaults."""
    import trl
    from datasets import Dataset

    common = dict(
        output_dir=str(out / "trainer"), max_steps=settings["steps"],
        per_device_train_batch_size=settings["batch_size"], learning_rate=settings["learning_rate"],
        lr_scheduler_type="constant", logging_steps=1, save_strategy="steps",
        save_steps=settings["checkpoint_every"], save_total_limit=1, bf16=False, fp16=False,
        gradient_checkpointing=False, use_cpu=settings["device"] == "cpu", report_to="none",
        seed=settings["seed"], data_seed=settings["seed"], disable_tqdm=not settings["progress"],
        dataloader_num_workers=0, max_length=settings["max_length"],
    )
    keys = {"dpo": ("prompt", "chosen", "rejected"), "kto": ("prompt", "completion", "label"),
            "sft": ("prompt", "completion")}[method]
    data = Dataset.from_list([{k: r[k] for k in keys} for r in rows])
    if method == "dpo":
        args, cls = trl.DPOConfig(**common, beta=settings["beta"]), trl.DPOTrainer
    elif method == "kto":
        args, cls = trl.KTOConfig(**common, beta=settings["beta"]), trl.KTOTrainer
    else:
        args, cls = trl.SFTConfig(**common, completion_only_loss=True), trl.SFTTrainer
    return cls(model=peft_model, args=args, train_dataset=data, processing_class=tokenizer,
               callbacks=callbacks)


def _snapshot_callback(peft_model, out: Path, every: int, checkpoints: list[dict[str, Any]]):
    """Save adapter-only weights (no optimizer state) every ``every`` steps and at the end."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import TrainerCallback

    class Snapshot(TrainerCallback):
        def __init__(self) -> None:
            self.steps_run, self.started, self.durations = 0, 0.0, []

        def on_step_begin(self, args, state, control, **kw):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.durations.append(time.perf_counter() - self.started)  # forward, backward, optimizer
            step = state.global_step
            self.steps_run += 1
            if step % every and step != state.max_steps:
                return
            folder = out / "checkpoints" / f"step-{step:06d}"
            folder.mkdir(parents=True, exist_ok=True)
            weights = {k: v.detach().cpu().contiguous()
                       for k, v in get_peft_model_state_dict(peft_model, adapter_name="default").items()}
            save_file(weights, str(folder / "adapter_model.safetensors"))
            lr = kw["lr_scheduler"].get_last_lr()[0] if kw.get("lr_scheduler") else args.learning_rate
            checkpoints[:] = [c for c in checkpoints if c["step"] != step]
            checkpoints.append({"step": step, "path": str(folder.relative_to(out)), "learning_rate": lr})

    return Snapshot()


def _own_progress(trainer, enabled: bool) -> None:
    """Replace transformers' bar and log printer (they write to stdout) by a bar on stderr."""
    import sys

    from tqdm.auto import tqdm
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not enabled:
        return

    class Bar(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kw):
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="tuning", file=sys.stderr,
                            dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kw):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

        def on_train_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.close()

    trainer.add_callback(Bar())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the libraries' deprecation chatter and dataset-map bars (the training bar stays)."""
    import datasets
    from datasets.utils.tqdm import are_progress_bars_disabled

    bars_were_off = are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with peft_quiet():
            yield
    finally:
        if not bars_were_off:
            datasets.enable_progress_bars()


def _previous(out: Path, rows_ids: list[int], method: str, resume: bool) -> tuple[str | bool, list]:
    """Resume point (``True``: the latest trainer checkpoint) and checkpoints of an earlier run."""
    record_path = out / RECORD_FILE
    has_ckpt = any((out / "trainer").glob("checkpoint-*")) if (out / "trainer").is_dir() else False
    if not record_path.is_file():
        return False, []
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if not resume:
        raise InputError(f"{str(out)!r} already holds a tuning run; choose another --out, or resume it")
    if record.get("feedback_ids") != rows_ids or record.get("method") != method:
        raise InputError(
            f"{str(out)!r} holds a run on other feedback or another method ({record.get('method')}, "
            f"{len(record.get('feedback_ids', []))} items); choose another --out"
        )
    return (True if has_ckpt else False), list(record.get("checkpoints", []))


def tune(
    model: Model, db: str | os.PathLike | None = None, *, out: str | os.PathLike, method: str | None = None,
    steps: int = 30, learning_rate: float = 5e-5, batch_size: int = 4, rank: int = 8,
    alpha: float | None = None, beta: float = 0.1, checkpoint_every: int = 10, max_length: int = 256,
    seed: int = 0, ids: list[int] | None = None, resume: bool = True, progress: bool = True,
) -> TuneResult:
    """Tune a LoRA adapter on the feedback stored about ``model``; save it to ``out``.

    ``model`` is left as it was (the LoRA layers are removed again afterwards).

    Args:
        model: the base model the feedback was given on (items about other models are skipped).
        db: feedback database (default: whyllm's cache).
        out: folder for the adapter, its record and checkpoints.
        method: ``dpo`` (pairs: corrections, or good and bad completions of one prompt), ``kto``
            (good/bad verdicts) or ``sft`` (corrections and good completions); default ``dpo`` when
            there are pairs, else ``kto``.
        steps: optimiser steps (in total: a resumed run continues up to this count).
        learning_rate: constant learning rate.
        batch_size: rows per step.
        rank: LoRA rank.
        alpha: LoRA scale numerator (default ``2 * rank``).
        beta: DPO/KTO temperature.
        checkpoint_every: save adapter-only weights every this many steps.
        max_length: longest prompt + completion in tokens (longer rows are truncated).
        seed: seed for initialisation and data order.
        ids: train only on these feedback ids.
        resume: continue a run left in ``out`` (same feedback and method) instead of refusing.
        progress: show the trainer's progress bar on stderr.

    Raises:
        InputError: no usable feedback for the method, a bad setting, or ``out`` holds another run.

    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("rank", rank),
                        ("checkpoint_every", checkpoint_every), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    if not learning_rate > 0:
        raise InputError(f"learning_rate must be > 0, got {learning_rate!r}")
    method, rows, used = _rows(model, db, ids, method)
    out = Path(out).expanduser()
    resume_from, checkpoints = _previous(out, used, method, resume)
    settings = {"steps": steps, "learning_rate": learning_rate, "batch_size": batch_size, "rank": rank,
                "alpha": alpha if alpha is not None else 2 * rank, "beta": beta,
                "checkpoint_every": checkpoint_every, "max_length": max_length, "seed": seed,
                "target_modules": "all-linear", "device": model.device.type, "progress": progress}
    base = {"name": model.name, "weights_hash": weights_hash(model)}
    out.mkdir(parents=True, exist_ok=True)
    return _train(model, out, method, rows, used, settings, base, resume_from, checkpoints)


def _write_record(out: Path, record: dict[str, Any]) -> None:
    tmp = out / (RECORD_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(out / RECORD_FILE)


def _train(model, out, method, rows, used, settings, base, resume_from, checkpoints) -> TuneResult:
    from peft import get_peft_model

    record = {"base": base, "method": method, "feedback_ids": used, "rows": rows,
              "settings": {k: v for k, v in settings.items() if k != "progress"}, "checkpoints": checkpoints,
              "losses": [], "complete": False}
    _write_record(out, record)
    was_training = model.hf.training
    with _quiet():
        peft_model = get_peft_model(model.hf, _lora_config(settings["rank"], settings["alpha"]))
    try:
        with _quiet():
            callback = _snapshot_callback(peft_model, out, settings["checkpoint_every"], checkpoints)
            trainer = _trainer(method, peft_model, model.tokenizer, rows, out, settings, [callback])
            _own_progress(trainer, settings["progress"])
            t0 = time.perf_counter()
            trainer.train(resume_from_checkpoint=resume_from or None)
            seconds = time.perf_counter() - t0
            peft_model.save_pretrained(str(out), selected_adapters=["default"])
        losses = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
        durations = sorted(callback.durations) or [seconds]
        step_seconds = durations[len(durations) // 2]
        record.update(losses=losses, checkpoints=sorted(checkpoints, key=lambda c: c["step"]),
                      steps=trainer.state.global_step, complete=True)
        _write_record(out, record)
    finally:
        with _quiet():
            peft_model.unload()  # the base modules go back in place, untouched
        model.hf.train(was_training)
    return TuneResult(
        adapter_dir=str(out), method=method, base=base, feedback_ids=tuple(used), n_rows=len(rows),
        steps=trainer.state.global_step, losses=tuple(losses), checkpoints=tuple(record["checkpoints"]),
        settings=record["settings"], seconds=seconds, step_seconds=step_seconds,
        meta=meta(model, "tune", tuning_method=method, **record["settings"]),
    )
