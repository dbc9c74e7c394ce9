"""One dispatch for every view format: :func:`terminal` (rich), :func:`html` (a fragment), :func:`figure`.

Each is a :func:`functools.singledispatch` function on the result type; the domain modules
(:mod:`~whyllm.render.terminal` and :mod:`~whyllm.render.html` for predictions and generations,
:mod:`~whyllm.render.attribution`, :mod:`~whyllm.render.internals`, :mod:`~whyllm.render.qk`,
:mod:`~whyllm.render.plot`) register their views on import, and :mod:`whyllm.render` imports them all.
Views return values; nothing prints.
"""

from __future__ import annotations

import html as _html
from functools import singledispatch
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from whyllm.errors import InputError

__all__ = ["figure", "html", "terminal"]


@singledispatch
def terminal(result: object) -> RenderableType:
    """The rich renderable of a result (its ``repr`` for a type with no view)."""
    return Text(repr(result))


@singledispatch
def html(result: object) -> str:
    """The HTML body of a result's view (its ``repr`` for a type with no view)."""
    return f"<pre>{_html.escape(repr(result))}</pre>"


@singledispatch
def figure(result: object) -> Any:
    """The result drawn on a new matplotlib ``Figure``."""
    raise InputError(f"no PNG view for {type(result).__name__}; results with one: "
                     f"{', '.join(sorted(t.__name__ for t in figure.registry if t is not object))}")
