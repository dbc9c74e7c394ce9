"""Fuzz tier: generated inputs on a tiny model; every surface must refuse bad input cleanly.

Fixed seed (``derandomize=True``) and a bounded budget: ``WHYLLM_FUZZ_SCALE`` (default 1) multiplies the
number of cases per test. See docs/reliability.md for the invariants and the figures.
"""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers.server import our_hooks

SCALE = float(os.environ.get("WHYLLM_FUZZ_SCALE", "1"))


def budget(n: int):
    """Hypothesis settings for ``n`` cases (scaled), reproducible, without time limits."""
    return settings(max_examples=max(1, int(n * SCALE)), derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def model():
    from whyllm.model.tiny import tiny_model

    return tiny_model("llama")


@pytest.fixture
def clean_after(model):
    """Nothing left behind: no hook on the model, no extra thread."""
    threads = threading.active_count()
    yield
    assert our_hooks(model.hf) == 0
    assert threading.active_count() <= threads
