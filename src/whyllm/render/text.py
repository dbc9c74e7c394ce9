"""Format-free helpers every view shares: visible whitespace, short labels, numbers, the colour scales.

Nothing here knows about rich, HTML or matplotlib; each format turns these values into its own markup.
"""

from __future__ import annotations

import math

__all__ = ["LOW_PROB", "fmt_prob", "prob_log_rgba", "shorten", "signed_rgba", "visible"]

LOW_PROB = 0.1  # picks below this probability are marked as unlikely

# Space, newline and tab get readable arrows; every other control character its Unicode "control
# picture" (U+2400 block), so no token renders as nothing.
_VISIBLE = str.maketrans({
    **{chr(c): chr(0x2400 + c) for c in range(32)}, "\x7f": "␡", " ": "␣", "\n": "↵", "\t": "⇥",
})


def visible(text: str) -> str:
    """Return ``text`` with whitespace and control characters visible (``" Paris"`` -> ``"␣Paris"``)."""
    return text.translate(_VISIBLE)


def shorten(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters, an ellipsis marking the cut."""
    return text if len(text) <= n else text[: n - 1] + "…"


def fmt_prob(p: float, exp_digits: int = 1) -> str:
    """Format a probability compactly: ``0.734``, ``0.002``, ``3.1e-05`` (``exp_digits`` after the point)."""
    return f"{p:.3f}" if p >= 0.001 or p == 0 else f"{p:.{exp_digits}e}"


def prob_log_rgba(p: float) -> tuple[int, int, int, float]:
    """Return the probability colour of the explorer and the HTML reports.

    One green hue whose strength follows log10(p) from 0.01% (faint) to 100% (strongest), so likely but
    not top answers never look like errors (red marks only unlikely sampled tokens, separately).
    """
    t = max(0.0, min(1.0, (math.log10(max(float(p), 1e-12)) + 4) / 4))
    return (45, 164, 78, round(0.05 + 0.55 * t, 3))


def signed_rgba(s: float) -> tuple[int, int, int, float]:
    """The colour of a signed score in [-1, 1]: red positive, blue negative, white zero."""
    s = max(-1.0, min(1.0, float(s)))
    return (220, 38, 38, s) if s >= 0 else (37, 99, 235, -s)
