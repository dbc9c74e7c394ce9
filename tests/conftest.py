"""Shared fixtures. Tiers (see tests/README.md): unit (tiny random models), integration (real Gemma)."""

from __future__ import annotations

import functools

import pytest
import torch

from whyllm.model.tiny import TINY_ARCHITECTURES, tiny_model

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@functools.cache
def _tiny(arch: str):
    return tiny_model(arch)


@pytest.fixture(params=TINY_ARCHITECTURES)
def any_tiny(request):
    """A tiny random model of each supported architecture in turn (cached, do not mutate)."""
    return _tiny(request.param)


@pytest.fixture
def tiny():
    """Factory: ``tiny("llama")`` returns the cached tiny model of that architecture."""
    return _tiny


@pytest.fixture(scope="session")
def gemma():
    """The real default model (Gemma 3 270M), converted once into the cache."""
    from whyllm import load_model

    return load_model(progress=False)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
