"""Commands made from the registry: ``whyllm NAME`` for every analysis no hand-written command serves.

The command's arguments are the function's parameters: positional ones become arguments, keyword-only
ones options, required when they have no default (a ``list[int]`` option ``layers`` is given as
``--layer N``, repeated), each with the help text of its docstring's ``Args:`` entry. Long analyses
get the progress bar; every command gets the shared loading and output options.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer

from whyllm.cli._app import Run, app, command, progress_bar
from whyllm.methods.registry import ANALYSES, Analysis

__all__ = ["add_missing_commands", "command_for"]

_SCALARS = (str, int, float, bool)


def _docs(fn: Callable) -> dict[str, str]:
    """Parameter -> first sentence of its entry in the Google-style ``Args:`` section."""
    doc = inspect.getdoc(fn) or ""
    section = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    section = re.split(r"\n\S", section, maxsplit=1)[0]  # up to the next section
    out = {}
    for m in re.finditer(r"^ {4}(\w+): (.*(?:\n {8}.*)*)", section, flags=re.M):
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", " ".join(m.group(2).split()))  # :func:`x` -> x
        out[m.group(1)] = text.replace("``", "")
    return out


def _cli_type(annotation: Any) -> tuple[Any, bool] | None:
    """The typer type for an annotation and whether it is a repeated option (``None``: unsupported)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1
    base = args[0] if optional else annotation
    if base in _SCALARS:
        return (base | None if optional else base), False
    origin = typing.get_origin(base)
    item = typing.get_args(base)[:1]
    if origin in (list, tuple, Sequence) and item and item[0] in _SCALARS:
        return list[item[0]] | None, True
    return None


def _parameter(p: inspect.Parameter, help_text: str) -> inspect.Parameter | None:
    kind = _cli_type(p.annotation)
    if kind is None:
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"parameter {p.name!r} has a type the CLI cannot parse: {p.annotation!r}")
        return None  # an option the command line leaves at its default
    cli_type, repeated = kind
    if p.default is inspect.Parameter.empty and p.kind is not p.KEYWORD_ONLY:
        info = typer.Argument(help=help_text, show_default=False)
        return inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 annotation=Annotated[cli_type, info])
    name = p.name[:-1] if repeated and p.name.endswith("s") else p.name
    flag = "--" + name.replace("_", "-")
    decls = (f"{flag}/--no-{name.replace('_', '-')}",) if cli_type is bool else (flag,)
    info = typer.Option(*decls, help=help_text + (" (repeat for several)" if repeated else ""))
    default = list(p.default) if repeated and p.default not in (None, p.empty) else p.default
    return inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=default,  # empty: required
                             annotation=Annotated[cli_type, info])


def command_for(entry: Analysis, on: typer.Typer | None = None) -> Callable:
    """Register ``whyllm <entry.command_name>`` running ``entry.fn`` (on ``on``, default the whyllm app)."""
    sig = inspect.signature(entry.fn, eval_str=True)
    docs = _docs(entry.fn)
    own = list(sig.parameters.values())[1:]  # after the model
    params = [q for p in own if p.name != "progress" and p.kind is not p.VAR_KEYWORD
              and (q := _parameter(p, docs.get(p.name, ""))) is not None]
    texts = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]

    def run_entry(run: Run, **kwargs: Any) -> None:
        m = run.load(*(kwargs[t] for t in texts))
        if entry.unit is None:
            run.emit(entry.fn(m, **kwargs))
            return
        with progress_bar(entry.name) as progress:
            result = entry.fn(m, progress=progress, **kwargs)
        run.emit(result)

    run_param = inspect.Parameter("run", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Run)
    run_entry.__signature__ = inspect.Signature([run_param, *params])  # type: ignore[attr-defined]
    run_entry.__name__ = entry.command_name
    run_entry.__doc__ = entry.summary
    return command(entry.command_name, on=on)(run_entry)


def add_missing_commands() -> None:
    """Make a command for every registered analysis that no hand-written command serves."""
    have = {c.name or c.callback.__name__ for c in app.registered_commands}
    for entry in ANALYSES.values():
        if entry.command_name not in have:
            command_for(entry)
            have.add(entry.command_name)
