"""``whyllm params`` (parameter attribution) and ``whyllm influence`` (training-data attribution)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from whyllm.cli._app import (
    DeviceOpt,
    DtypeOpt,
    HtmlOpt,
    JsonOpt,
    ModelOpt,
    PickleOpt,
    PngOpt,
    TrustOpt,
    command,
    emit,
    err_console,
    load,
)
from whyllm.errors import InputError


@contextmanager
def _progress(enabled: bool, what: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _emit(result, json: bool, html: Path | None, png: Path | None) -> None:
    if png is not None:
        from whyllm.render.params import save_png

        save_png(result, png)
    emit(result, as_json=json, html=html)


@command()
def params(
    prompt: str,
    target: Annotated[str | None, typer.Option(
        help="Token explained (first token of the text); default: the model's top prediction.")] = None,
    foil: Annotated[str | None, typer.Option(
        help="Explain the target - foil logit difference instead of log p(target).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Rows, neurons and heads listed.")] = 10,
    check: Annotated[bool, typer.Option(
        help="Rescale each group by 1-epsilon and zero the top units; compare with the prediction.")] = True,
    epsilon: Annotated[float, typer.Option(help="Relative rescaling of the check.")] = 0.01,
    model: ModelOpt = None, dtype: DtypeOpt = "float32", device: DeviceOpt = "cpu",
    trust_remote_code: TrustOpt = False, allow_pickle: PickleOpt = False,
    json: JsonOpt = False, html: HtmlOpt = None, png: PngOpt = None,
) -> None:
    """Parameter attribution: gradient x weight per parameter group, row, neuron and head, self-checked."""
    import warnings

    from whyllm.methods.params import params as run

    if top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {top_k}")
    m = load(model, dtype, device, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
             prompts=(prompt,))
    with warnings.catch_warnings():  # an undefined check is said in the result's notes
        warnings.simplefilter("ignore", UserWarning)
        res = run(m, prompt, target=target, foil=foil, top_k=top_k, check=check, epsilon=epsilon)
    _emit(res, json, html, png)


@command()
def influence(
    run: Annotated[Path, typer.Option("--run", help="Run directory written by `whyllm train`.")],
    prompt: Annotated[str, typer.Option(help="The prompt.")],
    target: Annotated[str, typer.Option(help="The continuation whose log-probability is explained.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Proponents and opponents listed.")] = 10,
    verify: Annotated[bool, typer.Option(
        help="Retrain without the top-k examples and without k random ones; report the drops.")] = False,
    k: Annotated[int | None, typer.Option(help="Examples removed by --verify (default --top-k).")] = None,
    seeds: Annotated[int, typer.Option(help="Random removals made by --verify (seeds 0..N-1).")] = 3,
    batch_size: Annotated[int, typer.Option(help="Training examples per forward/backward pass.")] = 64,
    threads: Annotated[int, typer.Option(help="CPU threads (1 suits tiny models on shared cores).")] = 1,
    json: JsonOpt = False, html: HtmlOpt = None, png: PngOpt = None,
) -> None:
    """Training-data attribution (TracIn over the run's checkpoints): which examples raised the target."""
    from whyllm.training.influence import influence as run_influence

    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    with _progress(not json, "checkpoints, then retrains") as progress:
        res = run_influence(run, prompt, target, top_k=top_k, verify=verify, k=k, seeds=tuple(range(seeds)),
                            batch_size=batch_size, threads=threads, progress=progress)
    _emit(res, json, html, png)
