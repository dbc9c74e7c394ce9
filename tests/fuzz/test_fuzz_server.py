"""Every endpoint under Schemathesis-generated requests (from /openapi.json): 2xx, 4xx or 429, never 5xx."""

from __future__ import annotations

import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import budget
from tests.helpers.server import BASE, TOKEN, our_hooks
from whyllm.server import create_app
from whyllm.server.app import ENDPOINTS


@pytest.fixture(scope="module")
def client(model, tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "feedback.sqlite"
    with TestClient(create_app(model, token=TOKEN, feedback_db=db), base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def operations(client):
    doc = client.get("/openapi.json", headers={"X-Whyllm-Token": TOKEN}).json()
    schema = schemathesis.openapi.from_dict(doc)
    return [op.ok() for op in schema.get_all_operations() if op.ok().method.upper() == "POST"]


def test_every_endpoint_is_in_the_schema(operations):
    paths = {op.path.removeprefix("/api/") for op in operations}
    assert paths >= set(ENDPOINTS) | {"emerge", "feedback", "generate/stream"}


@budget(60)
@given(data=st.data())
def test_no_5xx(client, operations, model, data):
    for op in operations:
        case = data.draw(op.as_strategy(), label=op.path)
        body = None if case.body is None else json.dumps(case.body)  # ASCII-escaped: lone surrogates travel
        r = client.request(case.method, case.formatted_path, params=case.query or None, content=body,
                           headers={"X-Whyllm-Token": TOKEN, "content-type": "application/json"})
        assert r.status_code < 500, (case.formatted_path, case.body, case.query, r.status_code, r.text[:300])
        assert r.status_code in (200, 400, 413, 422, 429), (case.formatted_path, r.status_code, r.text[:300])
    assert our_hooks(model.hf) == 0
