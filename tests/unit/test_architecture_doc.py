"""docs/architecture.md's worked example, run as written: one module and one registry line are enough."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from tests.unit.methods.test_registry import _same, _state
from whyllm.methods.registry import Analysis
from whyllm.model.hooks import raw_hooks
from whyllm.server.schemas import request_for

DOC = Path(__file__).parents[2] / "docs" / "architecture.md"
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def example():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    module = types.ModuleType("whyllm_doc_surprisal")
    sys.modules[module.__name__] = module  # dataclasses resolve ClassVar annotations through it
    try:
        exec(compile(blocks[0], str(DOC), "exec"), module.__dict__)
        entry = eval(blocks[1].strip().rstrip(","), {"Analysis": Analysis, "surprisal": module.surprisal,
                                                     "_PROMPT": PROMPT})
        yield module, entry
    finally:
        del sys.modules[module.__name__]


def test_the_method_is_right(example, tiny):
    module, entry = example
    model = tiny("llama")
    result = entry.fn(model, **entry.example)
    ids = model.encode(PROMPT)[0]
    with torch.no_grad():
        probs = model.hf(input_ids=ids[None]).logits[0].float().softmax(-1)
    want = [-float(probs[j, ids[j + 1]].log()) for j in range(len(ids) - 1)]
    assert result.surprisal == pytest.approx(want, rel=1e-5)
    assert len(result.to_dataframe()) == len(ids) - 1


def test_its_command_appears(example, tiny, monkeypatch):
    _, entry = example
    monkeypatch.setattr("whyllm.model.load.load_model", lambda *a, **k: tiny("llama"))
    app = typer.Typer()
    from whyllm.cli.generated import command_for

    command_for(entry, on=app)
    app.command("noop")(lambda: None)  # two commands, so typer keeps the command name
    r = CliRunner().invoke(app, ["surprisal", PROMPT, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["kind"] == "surprisal"
    assert "How unexpected" in CliRunner().invoke(app, ["surprisal", "--help"]).stdout


def test_its_endpoint_schema_appears(example, tiny):
    _, entry = example
    schema = request_for(entry)
    assert set(schema.model_fields) == {"prompt"}
    body = schema.model_validate({"prompt": PROMPT})
    assert entry.fn(tiny("llama"), **body.call(tiny("llama"))).kind == "surprisal"
    with pytest.raises(ValueError):
        schema.model_validate({"prompt": PROMPT, "path": "/etc/passwd"})  # unknown fields refused


def test_it_leaves_no_trace(example, tiny):
    _, entry = example
    model = tiny("gemma3_text")
    before = _state(model)
    entry.fn(model, **entry.example)

    def boom(*_):
        raise RuntimeError("boom")

    with raw_hooks([model.adapter.blocks[-1]], lambda _: boom, pre=True), pytest.raises(RuntimeError):
        entry.fn(model, **entry.example)
    _same(_state(model), before)
