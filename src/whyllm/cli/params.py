"""``whyllm params`` (parameter attribution) and ``whyllm influence`` (training-data attribution)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from whyllm.cli._app import Run, command, progress_bar
from whyllm.errors import InputError
from whyllm.methods.params import params as run_params
from whyllm.training.influence import influence as run_influence


@command()
def params(
    run: Run,
    prompt: str,
    target: Annotated[str | None, typer.Option(
        help="Token explained (first token of the text); default: the model's top prediction.")] = None,
    foil: Annotated[str | None, typer.Option(
        help="Explain the target - foil logit difference instead of log p(target).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Rows, neurons and heads listed.")] = 10,
    check: Annotated[bool, typer.Option(
        help="Rescale each group by 1-epsilon and zero the top units; compare with the prediction.")] = True,
    epsilon: Annotated[float, typer.Option(help="Relative rescaling of the check.")] = 0.01,
) -> None:
    """Parameter attribution: gradient x weight per parameter group, row, neuron and head, self-checked."""
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {top_k}")
    m = run.load(prompt)
    with warnings.catch_warnings():  # an undefined check is said in the result's notes
        warnings.simplefilter("ignore", UserWarning)
        res = run_params(m, prompt, target=target, foil=foil, top_k=top_k, check=check, epsilon=epsilon)
    run.emit(res)


@command(loads_model=False)
def influence(
    run: Run,
    run_dir: Annotated[Path, typer.Option("--run", help="Run directory written by `whyllm train`.")],
    prompt: Annotated[str, typer.Option(help="The prompt.")],
    target: Annotated[str, typer.Option(help="The continuation whose log-probability is explained.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Proponents and opponents listed.")] = 10,
    verify: Annotated[bool, typer.Option(
        help="Retrain without the top-k examples and without k random ones; report the drops.")] = False,
    k: Annotated[int | None, typer.Option(help="Examples removed by --verify (default --top-k).")] = None,
    seeds: Annotated[int, typer.Option(help="Random removals made by --verify (seeds 0..N-1).")] = 3,
    batch_size: Annotated[int, typer.Option(help="Training examples per forward/backward pass.")] = 64,
    threads: Annotated[int, typer.Option(help="CPU threads (1 suits tiny models on shared cores).")] = 1,
) -> None:
    """Training-data attribution (TracIn over the run's checkpoints): which examples raised the target."""
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    with progress_bar("checkpoints, then retrains") as progress:
        res = run_influence(run_dir, prompt, target, top_k=top_k, verify=verify, k=k,
                            seeds=tuple(range(seeds)), batch_size=batch_size, threads=threads,
                            progress=progress)
    run.emit(res)
