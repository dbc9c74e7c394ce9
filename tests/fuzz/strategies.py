"""Hypothesis strategies for hostile inputs: any Unicode (lone surrogates too), extreme numbers."""

from __future__ import annotations

from hypothesis import strategies as st

# all of Unicode, surrogates included (the default strategies leave them out)
ANY_CHAR = st.characters(codec=None, categories=None, exclude_categories=())
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.sampled_from(["", " ", "\n", "hi \ud800", "\u0301" * 300, "The capital of France is", " Paris",
                     "When Mary and John went out, John gave it to", " Mary", "France", "<bos>", "\x00"]),
)
INTS = st.one_of(st.integers(-3, 40), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 2**31, 2**63]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, -0.0, 1e308]))
