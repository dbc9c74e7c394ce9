"""Generated from the registry: every analysis runs, reports progress, and leaves the model as it found it.

A new analysis gets these tests (and its CLI command and API endpoint) by its registry line alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers.server import our_hooks
from whyllm.errors import UnknownMethodError
from whyllm.methods.attribution.registry import METHODS
from whyllm.methods.registry import ANALYSES, markdown_table
from whyllm.model.hooks import raw_hooks
from whyllm.results.base import Result

PROBE = "Alice and Bob talked. Bob said hello to"
ARCHITECTURES = ("llama", "gemma3_text")  # plain, and soft-capped with post-norms and sliding windows


def _state(model) -> dict:
    """Everything a method could leave changed on a model."""
    with torch.no_grad():
        logits = model.hf(input_ids=model.encode(PROBE)).logits
    return {
        "hooks": our_hooks(model.hf), "attn": model.hf.config._attn_implementation,
        "training": model.hf.training, "grad_flags": [p.requires_grad for p in model.hf.parameters()],
        "grads": sum(p.grad is not None for p in model.hf.parameters()), "logits": logits,
    }


def _same(a: dict, b: dict) -> None:
    assert torch.equal(a.pop("logits"), b.pop("logits")), "the model's logits changed"
    assert a == b


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("name", ANALYSES.names())
def test_runs_and_leaves_no_trace(name, arch, tiny):
    model, entry = tiny(arch), ANALYSES[name]
    before = _state(model)
    seen = []
    kwargs = dict(entry.example)
    if entry.unit is not None:
        kwargs["progress"] = lambda done, total: seen.append((done, total))
    result = entry.fn(model, **kwargs)
    assert isinstance(result, Result)
    assert type(result).from_dict(json.loads(json.dumps(result.to_dict()))).to_dict() == result.to_dict()
    if entry.unit is not None:
        assert seen and all(0 <= d <= t for d, t in seen), f"{name} reported no sane progress: {seen}"
    _same(_state(model), before)


@pytest.mark.parametrize("at", [1, 2])
@pytest.mark.parametrize("name", ANALYSES.names())
def test_an_error_mid_run_leaves_no_trace(name, at, tiny):
    """The last block raises on its ``at``-th call (if any): whatever the method changed is restored."""
    model, entry = tiny("llama"), ANALYSES[name]
    before = _state(model)
    calls = []

    def boom(_mod, _args, _kwargs):
        calls.append(1)
        if len(calls) == at:
            raise RuntimeError("boom")

    with raw_hooks([model.adapter.blocks[-1]], lambda _: boom, pre=True):
        if at == 1:  # every analysis runs the model at least once
            with pytest.raises(RuntimeError, match="boom"):
                entry.fn(model, **entry.example)
        else:
            try:
                entry.fn(model, **entry.example)
            except RuntimeError as e:
                assert "boom" in str(e)
    _same(_state(model), before)


def test_progress_unit_matches_the_signature():
    import inspect

    for entry in ANALYSES.values():
        takes = "progress" in inspect.signature(entry.fn).parameters
        assert takes == (entry.unit is not None), entry.name


def test_every_analysis_has_a_command_and_an_endpoint():
    from whyllm.cli import app
    from whyllm.server.app import ENDPOINTS

    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    for entry in ANALYSES.values():
        assert entry.command_name in commands and entry.endpoint_name in ENDPOINTS


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownMethodError, match="unknown analysis 'lense'; choose one of: attention"):
        ANALYSES["lense"]
    with pytest.raises(UnknownMethodError, match="integrated_gradients"):
        METHODS["ig"]
    assert "lens" in ANALYSES and "lense" not in ANALYSES


def test_the_docs_tables_are_the_registry():
    doc = (Path(__file__).parents[3] / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert markdown_table(ANALYSES) in doc
    assert markdown_table(METHODS) in doc
