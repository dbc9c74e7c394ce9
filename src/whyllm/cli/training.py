"""``whyllm train`` (a causal LM from random initialisation) and ``whyllm emerge`` (checkpoint analyses)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from whyllm.cli._app import DeviceOpt, HtmlOpt, JsonOpt, PngOpt, command, emit, err_console
from whyllm.training.presets import PRESETS


@contextmanager
def _bar(enabled: bool, what: str, fields: bool) -> Iterator[Callable | None]:
    """A rich progress bar on stderr; with ``fields`` it shows loss, tokens/s and FLOPs."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    extra = (
        (
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} tok/s"),
            TextColumn("{task.fields[flops]} FLOPs"),
        )
        if fields
        else ()
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(what, total=None, loss="–", speed="–", flops="–")

        def update(done: int, total: int, stats: dict | None = None) -> None:
            more = {}
            if stats:
                more = {
                    "loss": f"{stats['loss']:.3f}",
                    "speed": f"{stats['tokens_per_s']:,.0f}",
                    "flops": f"{stats['flops']:.2e}",
                }
            bar.update(task, completed=done, total=total, **more)

        yield update


def _outputs(result, json: bool, html: Path | None, png: Path | None) -> None:
    if png is not None:
        from whyllm.render.training import save_png

        save_png(result, png)
    emit(result, as_json=json, html=html)


@command()
def train(
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
    json: JsonOpt = False,
    html: HtmlOpt = None,
    png: PngOpt = None,
) -> None:
    """Train a causal LM from random initialisation; checkpoints load with --model OUT/checkpoint-N."""
    from whyllm.training.train import train as run

    with _bar(not json, "training", fields=True) as progress:
        res = run(
            task,
            out=out,
            data=data,
            preset=preset,
            family=family,
            steps=steps,
            checkpoint_every=checkpoint_every,
            seed=seed,
            batch_size=batch_size,
            lr=lr,
            warmup=warmup,
            seq_len=seq_len,
            n_examples=examples,
            vocab_size=vocab_size,
            threads=threads,
            device=device,
            progress=progress,
        )
    _outputs(res, json, html, png)


@command()
def emerge(
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
    json: JsonOpt = False,
    html: HtmlOpt = None,
    png: PngOpt = None,
) -> None:
    """How a prediction emerged: losses, target probability, head scores and phase changes per checkpoint."""
    from whyllm.training.emerge import emerge as run

    with _bar(not json, "analysing checkpoints", fields=False) as progress:
        res = run(
            run_dir,
            prompt=prompt,
            target=target,
            steps=step,
            ablate=ablate,
            threads=threads,
            device=device,
            progress=progress,
        )
    _outputs(res, json, html, png)
