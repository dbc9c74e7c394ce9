"""Tiny training runs shared by the training tests (about a second each)."""

from __future__ import annotations

import pytest

from tests.helpers.training import TINY
from whyllm.training import train


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A 6-step induction run with checkpoints 0, 3 and 6, and its TrainResult."""
    out = tmp_path_factory.mktemp("run") / "induction"
    return out, train("induction", out=out, **TINY)
