"""``whyllm explain`` (input attribution) and ``whyllm evaluate`` (rank attribution methods)."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer

from whyllm.cli._app import Run, command, progress_bar
from whyllm.errors import InputError
from whyllm.methods.attribution import evaluate as run_evaluate
from whyllm.methods.attribution import explain as run_explain
from whyllm.methods.attribution.registry import METHODS
from whyllm.results.attribution import GRANULARITIES

GranularityOpt = Annotated[str, typer.Option(help="Unit of attribution: token, word, sentence.")]
StepsOpt = Annotated[str, typer.Option(help="Integrated gradients' steps: N or 'auto' (until under 1%).")]
_IG = "integrated_gradients"
BaselineOpt = Annotated[str, typer.Option(
    help="'Absent' input: default (mean embedding for occlusion, context ablation and the faithfulness "
         "metrics; pad token for integrated gradients), mean, zero, or a token.")]


def _steps(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        steps = int(value)
    except ValueError:
        steps = 0
    if steps < 1:
        raise InputError(f"--steps must be an integer >= 1 or 'auto', got {value!r}")
    return steps


@command()
def explain(
    run: Run,
    prompt: str,
    target: Annotated[str | None, typer.Option(help="Continuation to explain (default: prediction).")] = None,
    foil: Annotated[str | None, typer.Option(help="Explain 'target rather than foil'.")] = None,
    method: Annotated[str, typer.Option(help=", ".join(METHODS) + ".")] = _IG,
    granularity: GranularityOpt = "token", steps: StepsOpt = "32", baseline: BaselineOpt = "default",
    per_token: Annotated[bool, typer.Option(help="Matrix: each target token from all earlier ones.")] = False,
    faithfulness: Annotated[bool, typer.Option("--faithfulness/--no-faithfulness",
                                               help="Comprehensiveness, sufficiency, deletion AUC.")] = True,
    samples: Annotated[int | None, typer.Option(help="context_ablation: random ablations to run.")] = None,
) -> None:
    """Which parts of PROMPT made the model predict its next token (or --target)?"""
    METHODS[method]  # an unknown method fails before the model loads
    n_steps = _steps(steps)
    if granularity not in GRANULARITIES[:3]:
        raise InputError(f"--granularity must be token, word or sentence, got {granularity!r}")
    options = {"samples": samples} if samples is not None else {}
    m = run.load(prompt)
    with progress_bar(method) as progress:
        res = run_explain(m, prompt, target=target, foil=foil, method=method, granularity=granularity,
                          steps=n_steps, baseline=baseline, faithfulness=faithfulness, per_token=per_token,
                          progress=progress, **options)
    run.emit(res)


def read_prompts(path: Path) -> list[str | dict]:
    """Prompts from a file: one per line, or JSON objects ``{"prompt", "target"?, "foil"?}`` per line."""
    if not path.is_file():
        raise InputError(f"prompt file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"prompt file {str(path)!r} is not UTF-8 text (byte {e.start} is "
                         f"{e.object[e.start]:#04x}); give a text file with one prompt per line") from None
    except OSError as e:
        raise InputError(f"cannot read prompt file {str(path)!r}: {e.strerror or e}") from None
    prompts: list[str | dict] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.lstrip().startswith("{"):
            try:
                prompts.append(jsonlib.loads(line))
            except ValueError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e})") from None
        else:
            prompts.append(line)
    if not prompts:
        raise InputError(f"prompt file {str(path)!r} has no prompts (one per line, '#' starts a comment)")
    return prompts


@command()
def evaluate(
    run: Run,
    prompt_file: Path,
    methods: Annotated[str | None, typer.Option(help="Comma-separated methods (default: all).")] = None,
    granularity: GranularityOpt = "token", steps: StepsOpt = "32", baseline: BaselineOpt = "default",
) -> None:
    """Rank attribution methods by faithfulness on the prompts of PROMPT_FILE (one per line or JSON lines)."""
    names = None if methods is None else [s.strip() for s in methods.split(",") if s.strip()]
    if names == []:
        raise InputError(f"--methods names no method ({methods!r}); give comma-separated names, e.g. "
                         "occlusion,saliency, or leave it out for all")
    for name in names or []:
        METHODS[name]
    n_steps = _steps(steps)
    prompts = read_prompts(prompt_file)
    m = run.load()
    with progress_bar("evaluating") as progress:
        res = run_evaluate(m, prompts, methods=names, granularity=granularity, steps=n_steps,
                           baseline=baseline, progress=progress)
    run.emit(res)
