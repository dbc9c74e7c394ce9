"""The typer app, the options every command shares, the error boundary and the one progress bar.

Commands live in sibling modules and are plain functions decorated with :func:`command`. A command that
loads a model takes a :class:`Run` as its first parameter: the decorator adds the loading options
(``--model``, ``--dtype``, ``--device``, ``--trust-remote-code``, ``--allow-pickle``) and the output
options (``--json``, ``--html``, ``--png``) to its signature, so they are written once here.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from whyllm.errors import WhyllmError
from whyllm.files import check_writable
from whyllm.methods.engine.progress import Progress
from whyllm.model import load as load_mod
from whyllm.model.base import Model, check_prompt

__all__ = ["Run", "app", "command", "err_console", "out_console", "progress_bar"]

app = typer.Typer(
    name="whyllm",
    help="Why did the model say that? Predictions, sampling, attribution and internals of causal LMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)


def _show_library_notes() -> None:
    """Show the library's ``logging.INFO`` notes (e.g. the one-time model conversion) on stderr."""
    from rich.logging import RichHandler

    logger = logging.getLogger("whyllm")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=err_console, show_time=False, show_path=False, show_level=False,
                              markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

_LOAD_OPTIONS = {
    "model": (Annotated[str | None, typer.Option(
        "--model", "-m", help="Model folder, .gguf file or hub id (default: bundled Gemma 3 270M).")], None),
    "dtype": (Annotated[str, typer.Option(help="float32, bfloat16 or float16.")], "float32"),
    "device": (Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")], "cpu"),
    "trust_remote_code": (Annotated[bool, typer.Option(
        "--trust-remote-code", help="Run the model repository's own code.")], False),
    "allow_pickle": (Annotated[bool, typer.Option(
        "--allow-pickle",
        help="Allow .bin/.pt checkpoints (loaded weights-only) when no safetensors exist.")], False),
    "adapter": (Annotated[Path | None, typer.Option(
        "--adapter", help="A LoRA adapter folder (from `whyllm tune`) applied on top of --model.")], None),
}
_OUTPUT_OPTIONS = {
    "json": (Annotated[bool, typer.Option(
        "--json", help="Print one JSON document (schema in docs/schema.md).")], False),
    "html": (Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")],
             None),
    "png": (Annotated[Path | None, typer.Option("--png", help="Also draw the view as a PNG image.")], None),
}


@dataclass
class Run:
    """The shared options of one command line: how to load the model and what to output."""

    model: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    adapter: Path | None = None
    json: bool = False
    html: Path | None = None
    png: Path | None = None

    def load(self, *prompts: object) -> Model:
        """Check ``prompts`` and the output paths (cheap), then load the model (status on stderr)."""
        for p in prompts:
            check_prompt(p)
        for path, what in ((self.html, "HTML report"), (self.png, "PNG image")):
            if path is not None:
                check_writable(path, what)
        _show_library_notes()
        with err_console.status("loading model…"):
            return load_mod.load_model(self.model, dtype=self.dtype, device=self.device,
                                       trust_remote_code=self.trust_remote_code,
                                       allow_pickle=self.allow_pickle, adapter=self.adapter)

    def emit(self, result: Any, *, show: bool = True) -> None:
        """Print a result (rich view, or its JSON document with ``--json``) and write the files asked for.

        Args:
            result: any whyllm result.
            show: print the rich view (``False`` when the command already streamed it).
        """
        if self.html is not None:
            result.to_html(self.html)
        if self.png is not None:
            from whyllm.render.plot import save_png  # matplotlib is an optional extra

            save_png(result, self.png)
        if self.json:
            sys.stdout.write(result.to_json(indent=None) + "\n")
        elif show:
            out_console.print(result)


_STATS = {"loss": "loss {:.3f}", "tokens_per_s": "{:,.0f} tok/s", "flops": "{:.2e} FLOPs"}


def _stats_text(stats: Mapping[str, float] | None) -> str:
    if not stats:
        return ""
    return " · ".join(_STATS.get(k, k + " {:.4g}").format(v) for k, v in stats.items())


@contextmanager
def progress_bar(what: str, unit: str | None = None) -> Iterator[Progress]:
    """The CLI's progress bar (transient, on stderr); yields the callback a long method takes.

    It shows done/total, the method's figures (``stats``), the elapsed time and, once the work has
    advanced, the remaining time; with ``unit`` also the rate (e.g. ``12.5 rows/s``).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(what, total=None, stats="")
        first: list[tuple[float, int]] = []

        def update(done: int, total: int, stats: Mapping[str, float] | None = None) -> None:
            text = _stats_text(stats)
            now = time.perf_counter()
            first[:] = first or [(now, done)]
            (t0, d0), = first
            if unit is not None and now > t0:
                text = " · ".join(x for x in (text, f"{(done - d0) / (now - t0):.1f} {unit}/s") if x)
            bar.update(task, completed=done, total=total, stats=text)

        yield update


def _parameters(options: dict[str, tuple[Any, Any]]) -> list[inspect.Parameter]:
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
            for name, (kind, default) in options.items()]


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """A library warning (e.g. integrated gradients' completeness) as one ``warning:`` line on stderr."""
    for w in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)):
        err_console.print(Text.assemble(("warning: ", "bold yellow"), " ".join(w.split())), soft_wrap=True)


def _fail(e: WhyllmError) -> typer.Exit:
    message = " ".join(str(e).split())  # one line, whatever the message holds
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    return typer.Exit(2)


def command(name: str | None = None, *, outputs: bool = True, loads_model: bool = True,
            on: typer.Typer | None = None) -> Callable:
    """Register a command (on ``on``, default the whyllm app) whose user errors end as one line and exit 2.

    A function whose first parameter is named ``run`` gets a :class:`Run` there, and the shared
    loading options (when ``loads_model``) and output options (when ``outputs``) on the command line.
    """

    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        params = list(sig.parameters.values())
        takes_run = bool(params) and params[0].name == "run"
        shared = {**(_LOAD_OPTIONS if loads_model else {}), **(_OUTPUT_OPTIONS if outputs else {})}
        shared = shared if takes_run else {}
        own = params[1:] if takes_run else params

        @functools.wraps(fn)
        def call(**kwargs: Any) -> Any:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", UserWarning)
                    try:
                        if takes_run:
                            return fn(Run(**{k: kwargs.pop(k) for k in shared}), **kwargs)
                        return fn(**kwargs)
                    finally:
                        _show_warnings(caught)
            except WhyllmError as e:
                raise _fail(e) from None

        full = own + _parameters(shared)
        call.__signature__ = sig.replace(parameters=full)  # type: ignore[attr-defined]
        call.__annotations__ = {p.name: p.annotation for p in full}
        del call.__wrapped__  # typer must read the new signature, not fn's
        return (on or app).command(name)(call)

    return wrap
