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
from rich.text import Text

from whyllm.errors import WhyllmError

__all__ = [
    "AdapterOpt", "DeviceOpt", "DtypeOpt", "ModelOpt", "PickleOpt", "TrustOpt", "app", "command", "emit",
    "err_console", "load", "out_console",
]

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
AdapterOpt = Annotated[Path | None, typer.Option(
    "--adapter", help="LoRA adapter folder (from `whyllm tune`) applied on top of --model.")]
DtypeOpt = Annotated[str, typer.Option(help="float32, bfloat16 or float16.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Run the model repository's own code.")]
PickleOpt = Annotated[bool, typer.Option(
    "--allow-pickle", help="Allow .bin/.pt checkpoints (loaded weights-only) when no safetensors exist.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (schema in docs/schema.md).")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")]
PngOpt = Annotated[Path | None, typer.Option("--png", help="Also draw the view as a PNG image.")]


def command(*args: Any, **kwargs: Any) -> Callable:
    """``app.command`` whose user errors end as one line on stderr and exit code 2."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*a: Any, **k: Any) -> Any:
            try:
                return fn(*a, **k)
            except WhyllmError as e:
                message = " ".join(str(e).split())  # one line, whatever the message holds
                err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
                raise typer.Exit(2) from None

        return app.command(*args, **kwargs)(run)

    return wrap


def load(model: str | None, dtype: str = "float32", device: str = "cpu", *, trust_remote_code: bool = False,
         allow_pickle: bool = False, prompts: tuple[object, ...] = (), adapter: Path | None = None):
    """Check ``prompts`` (cheap), then load the model named on the command line (progress on stderr)."""
    from whyllm.model.base import check_prompt
    from whyllm.model.load import load_model

    for p in prompts:
        check_prompt(p)
    with err_console.status("loading model…"):
        return load_model(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                          allow_pickle=allow_pickle, adapter=adapter)


def emit(result: Any, *, as_json: bool, html: Path | None = None, png: Path | None = None,
         show: bool = True) -> None:
    """Print a result (rich view or JSON document) and write the requested files.

    Args:
        result: any whyllm result.
        as_json: print its JSON document (one line) instead of the rich view.
        html: also write a self-contained HTML report there.
        png: also draw the view as a PNG image there.
        show: print the rich view (``False`` when the command already streamed it).

    """
    if html is not None:
        result.to_html(html)
    if png is not None:
        from whyllm.render.plot import save_png

        save_png(result, png)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
    elif show:
        out_console.print(result)
