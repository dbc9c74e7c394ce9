"""``whyllm train`` (a causal LM from random initialisation) and ``whyllm emerge`` (checkpoint analyses)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from whyllm.cli._app import Run, command, progress_bar
from whyllm.training.emerge import emerge as run_emerge
from whyllm.training.presets import PRESETS
from whyllm.training.train import train as run_train

DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")]


@command(loads_model=False)
def train(
    run: Run,
    task: Annotated[str, typer.Option(help="induction, copy, recall or text.")] = "induction",
    data: Annotated[
        str | None,
        typer.Option(
            help="For --task text: a .txt/.jsonl/.parquet file, a folder of them, python-docs (bundled) "
            "or default-model:N (N texts sampled from Gemma 3 270M)."
        ),
    ] = None,
    preset: Annotated[str, typer.Option(help=", ".join(PRESETS) + ".")] = "tiny",
    family: Annotated[
        str, typer.Option(help="Config family: llama (default), qwen2, mistral, gpt2...")
    ] = "llama",
    steps: Annotated[int, typer.Option(help="Optimizer steps in total.")] = 1000,
    checkpoint_every: Annotated[int, typer.Option(help="Save a checkpoint every K steps.")] = 100,
    seed: Annotated[int, typer.Option(help="Seeds data, initial weights and batch order.")] = 0,
    out: Annotated[Path, typer.Option(help="Run directory (resumed if it holds this run).")] = Path("run"),
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 32,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
    warmup: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 0,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per example (task default).")] = None,
    examples: Annotated[
        int | None,
        typer.Option(help="Size of the finite training set (synthetic default 4096; text: all chunks)."),
    ] = None,
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary for --task text.")] = 2048,
    threads: Annotated[int, typer.Option(help="CPU threads (1 suits tiny models).")] = 1,
    device: DeviceOpt = "cpu",
) -> None:
    """Train a causal LM from random initialisation; checkpoints load with --model OUT/checkpoint-N."""
    with progress_bar("training") as progress:
        res = run_train(task, out=out, data=data, preset=preset, family=family, steps=steps,
                        checkpoint_every=checkpoint_every, seed=seed, batch_size=batch_size, lr=lr,
                        warmup=warmup, seq_len=seq_len, n_examples=examples, vocab_size=vocab_size,
                        threads=threads, device=device, progress=progress)
    run.emit(res)


@command(loads_model=False)
def emerge(
    run: Run,
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by whyllm train.")],
    prompt: Annotated[
        str | None,
        typer.Option(help="Text to follow (default: a held-out example cut before a predictable token)."),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Continuation whose probability to follow.")] = None,
    step: Annotated[
        list[int] | None, typer.Option("--step", help="Only this checkpoint step (repeat).")
    ] = None,
    ablate: Annotated[bool, typer.Option(help="Zero each head at the last checkpoint.")] = True,
    threads: Annotated[int, typer.Option(help="CPU threads (1 suits tiny models).")] = 1,
    device: DeviceOpt = "cpu",
) -> None:
    """How a prediction emerged: losses, target probability, head scores and phase changes per checkpoint."""
    with progress_bar("analysing checkpoints") as progress:
        res = run_emerge(run_dir, prompt=prompt, target=target, steps=step, ablate=ablate, threads=threads,
                         device=device, progress=progress)
    run.emit(res)
