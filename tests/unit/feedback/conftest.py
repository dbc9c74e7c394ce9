"""Fixtures for the feedback tests: a fresh tiny model, a database, a tuned adapter (built once)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.feedback import fill
from whyllm.model.tiny import tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models train ~50x slower with 2 threads on shared cores
    yield
    torch.set_num_threads(before)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "feedback.sqlite"


@pytest.fixture(scope="session")
def tuned(tmp_path_factory):
    """``(adapter folder, db, TuneResult)``: DPO on PAIRS for 8 steps on a fresh tiny Llama."""
    from whyllm.feedback.tune import tune

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tuned")
    db = folder / "fb.sqlite"
    model = tiny_model("llama")
    fill(model, db)
    result = tune(model, db, out=folder / "adapter", steps=8, learning_rate=5e-3, batch_size=4,
                  checkpoint_every=4, progress=False)
    return folder / "adapter", db, result


@pytest.fixture
def adapted(tuned):
    """A fresh tiny Llama with the tuned adapter loaded."""
    from whyllm.model.adapters import load_adapter

    return load_adapter(tiny_model("llama"), tuned[0])
