"""Fixtures for the server tests: an app on the tiny Llama and clients for it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers.server import BASE, TOKEN, our_hooks
from whyllm.server import create_app


@pytest.fixture
def model(tiny):
    m = tiny("llama")
    yield m
    assert our_hooks(m.hf) == 0  # every request leaves the model as it found it


@pytest.fixture
def app(model):
    return create_app(model, token=TOKEN, queue_size=4)


@pytest.fixture
def client(app):
    """Same-origin client carrying the token (runs the app's lifespan, so the worker stops after)."""
    with TestClient(app, base_url=BASE, headers={"x-whyllm-token": TOKEN}) as c:
        yield c


@pytest.fixture
def anon(app):
    """A client without the token."""
    with TestClient(app, base_url=BASE) as c:
        yield c
