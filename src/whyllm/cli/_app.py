"""The typer app, shared options and the error boundary. Commands live in sibling modules."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from whyllm.errors import WhyllmError

__all__ = ["ModelOpt", "app", "command", "emit", "err_console", "load", "out_console"]

app = typer.Typer(
    name="whyllm",
    help="Why did the model say that? Predictions, sampling, attribution and internals of causal LMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model folder, .gguf file or hub id (default: bundled Gemma 3 270M)."),
]
DtypeOpt = Annotated[str, typer.Option(help="float32, bfloat16 or float16.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")]


def command(*args: Any, **kwargs: Any) -> Callable:
    """``app.command`` whose user errors end as one line on stderr and exit code 2."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*a: Any, **k: Any) -> Any:
            try:
                return fn(*a, **k)
            except WhyllmError as e:
                err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, markup=True)
                raise typer.Exit(2) from None

        return app.command(*args, **kwargs)(run)

    return wrap


def load(model: str | None, dtype: str = "float32", device: str = "cpu", *, trust_remote_code: bool = False,
         allow_pickle: bool = False, prompts: tuple[object, ...] = ()):
    """Check ``prompts`` (cheap), then load the model named on the command line (progress on stderr)."""
    from whyllm.model.base import check_prompt
    from whyllm.model.load import load_model

    for p in prompts:
        check_prompt(p)
    with err_console.status("loading model…"):
        return load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                          allow_pickle=allow_pickle)


def emit(result: Any, *, as_json: bool, html: Path | None = None, png: Path | None = None) -> None:
    """Print a result (rich view or JSON document) and write the requested files."""
    if html is not None:
        result.to_html(html)
    if png is not None:
        from whyllm.render.plot import save_png

        save_png(result, png)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    else:
        out_console.print(result)
