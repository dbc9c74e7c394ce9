"""``whyllm lens``, ``components``, ``attention`` and ``patch`` (with causal tracing)."""

from __future__ import annotations

from typing import Annotated

import typer

from whyllm.cli._app import Run, command, progress_bar
from whyllm.errors import InputError
from whyllm.methods.attention import attention as run_attention
from whyllm.methods.components import components as run_components
from whyllm.methods.lens import logit_lens
from whyllm.methods.patching import patch as run_patch
from whyllm.methods.tracing import causal_trace

TargetOpt = Annotated[str | None, typer.Option(
    help="Token to follow/explain (first token of the text); default: the model's top prediction.")]
FoilOpt = Annotated[str | None, typer.Option(help="Explain the target - foil logit difference instead.")]
LayersOpt = Annotated[list[int] | None, typer.Option(
    "--layer", "-l", help="Layer to include (repeat; default all).")]
HeadsOpt = Annotated[list[int] | None, typer.Option("--head", help="Head to include (repeat; default all).")]
PositionsOpt = Annotated[list[int] | None, typer.Option(
    "--position", "-p", help="Position to include, negative from the end (repeat; default all).")]
CorruptedOpt = Annotated[str | None, typer.Option(help="Corrupted prompt (same token length as CLEAN).")]
PatchFoilOpt = Annotated[str | None, typer.Option(
    help="Metric is the target - foil logit difference (default foil: the corrupted run's top token).")]
ComponentOpt = Annotated[str, typer.Option(help="resid_pre, resid_post, attn_out, mlp_out or head.")]
MethodOpt = Annotated[str, typer.Option(help="activation (real patching) or attribution (AtP).")]
CompareOpt = Annotated[bool, typer.Option(
    help="With --method attribution: also run real patching and report their rank correlation.")]
PerPositionOpt = Annotated[bool, typer.Option(help="With --component head: each head at each position.")]
SubjectOpt = Annotated[str | None, typer.Option(
    help="Causal tracing instead: noise this part of CLEAN (no --corrupted).")]
NoiseOpt = Annotated[float | None, typer.Option(help="Tracing noise std (default 3x the embeddings').")]


@command()
def lens(
    run: Run,
    prompt: str,
    target: TargetOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Tokens kept per layer and position.")] = 5,
    position: PositionsOpt = None,
) -> None:
    """Logit lens: decode the residual stream after every layer with the model's own read-out."""
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {top_k}")
    m = run.load(prompt)
    res = logit_lens(m, prompt, target=target, top_k=top_k, positions=position)
    run.emit(res)


@command()
def components(
    run: Run,
    prompt: str,
    target: TargetOpt = None,
    foil: FoilOpt = None,
    top_neurons: Annotated[int, typer.Option(help="Neurons listed for each of the top 3 MLPs.")] = 10,
) -> None:
    """Direct logit attribution: the next-token logit split into embeddings, heads and MLPs."""
    m = run.load(prompt)
    run.emit(run_components(m, prompt, target=target, foil=foil, top_neurons=top_neurons))


@command()
def attention(
    run: Run,
    prompt: str,
    layer: LayersOpt = None,
    head: HeadsOpt = None,
    target: TargetOpt = None,
    max_tokens: Annotated[int, typer.Option(help="Keep only the last N positions.")] = 256,
) -> None:
    """Attention patterns and head importance; the view draws the most important head selected."""
    m = run.load(prompt)
    res = run_attention(m, prompt, layers=layer, heads=head, target=target, max_tokens=max_tokens)
    run.emit(res)


@command()
def patch(
    run: Run,
    clean: str,
    corrupted: CorruptedOpt = None,
    target: TargetOpt = None,
    foil: PatchFoilOpt = None,
    component: ComponentOpt = "resid_pre",
    method: MethodOpt = "activation",
    compare: CompareOpt = False,
    per_position: PerPositionOpt = False,
    layer: LayersOpt = None, head: HeadsOpt = None, position: PositionsOpt = None,
    trace_subject: SubjectOpt = None,
    noise: NoiseOpt = None,
    samples: Annotated[int, typer.Option(help="Tracing noise samples.")] = 10,
    seed: Annotated[int, typer.Option(help="Tracing noise seed.")] = 0,
) -> None:
    """Activation / attribution patching of CLEAN into --corrupted, or causal tracing (--trace-subject)."""
    if (corrupted is None) == (trace_subject is None):
        raise InputError("give either --corrupted PROMPT (patching) or --trace-subject TEXT (causal "
                         "tracing), not both or neither")
    prompts = (clean,) if corrupted is None else (clean, corrupted)
    m = run.load(*prompts)
    with progress_bar("patching") as progress:
        if trace_subject is not None:
            res = causal_trace(m, clean, target=target, subject=trace_subject, noise=noise, samples=samples,
                               seed=seed, component=component, layers=layer, positions=position,
                               progress=progress)
        else:
            res = run_patch(m, clean, corrupted, target=target, foil=foil, component=component, method=method,
                      positions=position, layers=layer, heads=head, per_position=per_position,
                      compare=compare, progress=progress)
    run.emit(res)
