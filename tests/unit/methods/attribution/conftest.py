"""Fixtures for the attribution tests: a tiny model and its prepared input."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.attribution import PROMPT
from whyllm.methods.attribution.baselines import baseline_embeddings
from whyllm.methods.attribution.inputs import prepare


@pytest.fixture
def llama(tiny):
    return tiny("llama")


@pytest.fixture
def setup(llama):
    """(model, prepared input, input embeddings, baseline embeddings, id of ' Mary')."""
    prep = prepare(llama, PROMPT)
    with torch.no_grad():
        x = llama.adapter.embed(prep.ids)
    base, _ = baseline_embeddings(llama, prep, x, "default")
    return llama, prep, x, base, llama.encode_continuation(" Mary")[0]
