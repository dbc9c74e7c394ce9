"""Data and helpers shared by the feedback tests."""

from __future__ import annotations

PROMPT = "The capital of France is"
PAIRS = [  # (prompt, flagged completion, correction)
    ("The capital of France is", " Rome", " Paris"),
    ("The capital of Italy is", " Paris", " Rome"),
    ("The Eiffel Tower is in", " Rome", " Paris"),
    ("Berlin is the capital of", " France", " Germany"),
]


def fill(model, db, pairs=PAIRS, repeat=1):
    """Store each pair as a bad completion with its correction; return the items."""
    from whyllm.feedback import add_feedback

    return [add_feedback(model, p, bad, "bad", correction=good, db=db)
            for _ in range(repeat) for p, bad, good in pairs]
