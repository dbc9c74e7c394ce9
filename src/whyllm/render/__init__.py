"""Views of results: terminal (rich), HTML fragments and reports, PNG figures. See :mod:`.dispatch`."""

from whyllm.render import (
    attribution,
    batch,
    circuits,
    dispatch,
    feedback,
    html,
    internals,
    params,
    plot,
    qk,
    terminal,
    training,
)

__all__ = [
    "attribution", "batch", "circuits", "dispatch", "feedback", "html", "internals", "params", "plot",
    "qk", "terminal", "training",
]
