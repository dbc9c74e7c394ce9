"""Cost of the feedback loop: ``whyllm.tune`` against TRL's trainer run directly, and ``whyllm.diff``.

Usage::

    python bench/feedback.py                    # Gemma 3 270M, the docs/feedback.md data
    python bench/feedback.py --model tiny       # tiny random Llama (seconds)
    python bench/feedback.py --steps 6 --repeat 2 --json

Tuning: the same rows, LoRA settings (rank 8, all linear layers), batch size, learning rate and step
count run through :func:`whyllm.tune` and through ``trl.DPOTrainer`` built by hand (``get_peft_model``
+ ``DPOConfig`` with the same overrides), alternately, ``--repeat`` times each; the figure is the best
median optimiser-step time of each (step begin to step end: forward, backward, update; checkpoint
saves, which whyllm adds for resuming and TracIn, are reported apart as whole-run seconds) and their
ratio (goal: TRL time / whyllm time >= 0.95).

Diff: :func:`whyllm.diff` of one prompt without TracIn against the same analyses on one model
(``predict``, ``generate``, the per-layer read-out and ``components`` on the tuned model once); goal
<= 4x. TracIn's own cost (per checkpoint: one gradient per training row and per prompt) is reported
apart. Other jobs share these CPUs: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))


def _model(name: str):
    if name == "tiny":
        from whyllm.model.tiny import tiny_model

        return tiny_model("llama")
    import whyllm

    return whyllm.load_model(progress=False)


def _fill(model, db: Path, name: str) -> None:
    from whyllm.feedback import add_feedback

    if name == "tiny":
        rows = [("The capital of France is", " Rome", " Paris"),
                ("The capital of Italy is", " Paris", " Rome"),
                ("The Eiffel Tower is in", " Rome", " Paris"),
                ("Berlin is the capital of", " France", " Germany")]
        for p, bad, good in rows:
            add_feedback(model, p, bad, "bad", correction=good, db=db)
        return
    import feedback_data

    for it in feedback_data.items():
        add_feedback(model, it["prompt"], it["completion"], "bad", correction=it["correction"], db=db)


class _StepTimer:
    """Median optimiser-step time, measured as whyllm.tune measures its own (step begin to step end)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Timer(TrainerCallback):
            def __init__(self) -> None:
                self.durations, self.started = [], 0.0

            def on_step_begin(self, args, state, control, **kw):
                self.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                self.durations.append(time.perf_counter() - self.started)

        return Timer()


def _trl_direct(model, db: Path, out: Path, steps: int, lr: float) -> float:
    """TRL's DPOTrainer on the same rows and settings, built by hand; seconds per step."""
    import trl
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import PrinterCallback

    from whyllm.feedback import formats, store
    from whyllm.model.adapters import peft_quiet

    rows = formats.rows(store.select(db), "dpo", conversational=False)
    with peft_quiet():
        peft = get_peft_model(model.hf, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                   target_modules="all-linear", task_type="CAUSAL_LM"))
        args = trl.DPOConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=lr, lr_scheduler_type="constant", logging_steps=1,
                             save_strategy="no", bf16=False, fp16=False, gradient_checkpointing=False,
                             use_cpu=True, report_to="none",
                             seed=0, data_seed=0, disable_tqdm=True, max_length=256, beta=0.1)
        trainer = trl.DPOTrainer(model=peft, args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=model.tokenizer)
        trainer.remove_callback(PrinterCallback)  # as whyllm does
        timer = _StepTimer()
        trainer.add_callback(timer)
        trainer.train()
        seconds = sorted(timer.durations)[len(timer.durations) // 2]
        peft.unload()
    model.hf.eval()
    return seconds


def bench_tune(model, name: str, steps: int, repeat: int, lr: float) -> dict:
    """Best seconds per step of whyllm.tune and of TRL directly, alternating."""
    from whyllm.feedback.tune import tune

    work = Path(tempfile.mkdtemp(prefix="whyllm-bench-"))
    db = work / "fb.sqlite"
    _fill(model, db, name)
    ours, theirs, runs = [], [], []
    try:
        for i in range(repeat):
            r = tune(model, db, out=work / f"ours{i}", method="dpo", steps=steps, learning_rate=lr,
                     checkpoint_every=steps, progress=False)
            ours.append(r.step_seconds)
            runs.append(r.seconds)
            theirs.append(_trl_direct(model, db, work / f"trl{i}", steps, lr))
    finally:
        adapter = work / "ours0"
    best_ours, best_theirs = min(ours), min(theirs)
    return {"steps": steps, "repeat": repeat, "whyllm_s_per_step": best_ours, "trl_s_per_step": best_theirs,
            "speed_vs_trl": best_theirs / best_ours, "all_whyllm": ours, "all_trl": theirs,
            "whyllm_run_s": min(runs),
            "adapter": str(adapter), "db": str(db), "work": str(work)}


def _analyses_once(model, prompt: str, max_new_tokens: int) -> None:
    import whyllm
    from whyllm.feedback.diff import _layer_lps

    pred = whyllm.predict(model, prompt, top_k=1)
    whyllm.generate(model, prompt, max_new_tokens=max_new_tokens, greedy=True, seed=0, alternatives=1)
    _layer_lps(model, prompt)
    top = pred.top[0].token
    whyllm.components(model, prompt, target=top, top_neurons=0)


def bench_diff(model, adapter: str, prompt: str, max_new_tokens: int, repeat: int) -> dict:
    """Best diff time of one prompt vs the same analyses on one model; TracIn apart."""
    from whyllm.feedback.diff import diff
    from whyllm.model.adapters import load_adapter

    adapted = load_adapter(model, adapter)
    one, pair = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _analyses_once(adapted, prompt, max_new_tokens)
        one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        diff(adapted, [prompt], max_new_tokens=max_new_tokens, feedback=False)
        pair.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    with_tracin = diff(adapted, [prompt], max_new_tokens=max_new_tokens, feedback=True)
    tracin_s = time.perf_counter() - t0 - min(pair)
    rows = len(adapted.record.get("rows", []))
    return {"one_model_s": min(one), "diff_s": min(pair), "ratio": min(pair) / min(one),
            "tracin_s": tracin_s, "tracin_rows": rows,
            "checkpoints": len(adapted.record.get("checkpoints", [])),
            "top_feedback": with_tracin.prompts[0].feedback[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma", choices=("gemma", "tiny"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or (1 if args.model == "tiny" else 2))
    model = _model(args.model)
    lr = 5e-3 if args.model == "tiny" else 1e-4
    tuned = bench_tune(model, args.model, args.steps, args.repeat, lr)
    prompt = "Q: What is the capital of Italy?\nA:" if args.model == "gemma" else "The capital of France is"
    diffed = bench_diff(model, tuned["adapter"], prompt, 8, args.repeat)
    shutil.rmtree(tuned.pop("work"), ignore_errors=True)
    doc = {"model": args.model, "threads": torch.get_num_threads(), "tune": tuned, "diff": diffed}
    if args.json:
        print(json.dumps(doc, default=str))
        return
    print(f"tune ({args.steps} DPO steps, batch 4, LoRA r=8): whyllm "
          f"{tuned['whyllm_s_per_step']:.3f} s/step, TRL direct {tuned['trl_s_per_step']:.3f} s/step, "
          f"speed vs TRL {tuned['speed_vs_trl']:.2f}x (goal >= 0.95)")
    print(f"diff of one prompt: {diffed['diff_s']:.2f} s vs {diffed['one_model_s']:.2f} s for the same "
          f"analyses on one model = {diffed['ratio']:.2f}x (goal <= 4); TracIn over "
          f"{diffed['tracin_rows']} rows x {diffed['checkpoints']} checkpoint(s): {diffed['tracin_s']:.1f} s")


if __name__ == "__main__":
    main()
