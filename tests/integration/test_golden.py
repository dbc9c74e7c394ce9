"""Golden ``--json`` documents of every command on the default model: refactors must not change them.

Each case runs the CLI in-process (typer's ``CliRunner``) with model loading served by the session's
Gemma, and compares the JSON document with the file recorded under ``golden/``: same keys, same
strings, numbers within 1e-6 (absolute) plus 1e-5 (relative, float32 sums reordered by batching).
Record them anew with ``WHYLLM_RECORD_GOLDEN=1 pytest tests/integration/test_golden.py`` only when a
change of output is intended, and say so in the commit.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from whyllm.cli import app
from whyllm.model import load as load_mod

HERE = Path(__file__).parent / "golden"
VOLATILE = frozenset({"seconds"})  # wall-clock fields
IOI = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
FRANCE = "The capital of France is"
CONTRAST = ["--target", " Mary", "--foil", " John"]

CASES: dict[str, list[str]] = {
    "predict": ["predict", FRANCE, "--target", " Paris", "-k", "5"],
    "generate": ["generate", "Once upon a time", "-n", "8", "--temperature", "0.8", "--seed", "1"],
    "generate_greedy": ["generate", FRANCE, "-n", "6", "--greedy", "--seed", "0"],
    "samples": ["generate", "Once upon a time", "-n", "6", "--seed", "1", "--samples", "3"],
    **{
        f"explain_{m}": ["explain", IOI, *CONTRAST, "--method", m, "--steps", "32"]
        for m in ("saliency", "input_x_gradient", "integrated_gradients", "occlusion", "attention",
                  "attention_rollout")
    },
    "explain_context_ablation": ["explain", IOI, *CONTRAST, "--method", "context_ablation", "--samples", "4"],
    "explain_word": ["explain", IOI, "--target", " Mary", "--method", "occlusion", "--granularity", "word"],
    "explain_per_token": ["explain", FRANCE, "--target", " Paris. It", "--method", "input_x_gradient",
                          "--per-token"],
    "lens": ["lens", FRANCE, "--target", " Paris"],
    "components": ["components", FRANCE, "--target", " Paris"],
    "attention": ["attention", FRANCE, "--layer", "3", "--layer", "5"],
    "patch": ["patch", IOI, "--corrupted", IOI_CORRUPTED, *CONTRAST],
    "patch_heads": ["patch", IOI, "--corrupted", IOI_CORRUPTED, *CONTRAST, "--component", "head"],
    "patch_atp": ["patch", IOI, "--corrupted", IOI_CORRUPTED, *CONTRAST, "--component", "attn_out",
                  "--method", "attribution", "--compare"],
    "trace": ["patch", "The Eiffel Tower is in the city of", "--trace-subject", "Eiffel Tower",
              "--target", " Paris"],
}
EVALUATE_PROMPTS = [IOI, FRANCE]


def _close(a, b, where: str) -> None:
    """``a`` (new) equals ``b`` (golden) up to float noise; raises AssertionError naming the place."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in b.keys() - VOLATILE:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(b, float) and not isinstance(a, bool) and isinstance(a, int | float):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture
def gemma_cli(gemma, monkeypatch):
    monkeypatch.setattr(load_mod, "load_model", lambda name=None, **kw: gemma)
    return gemma


def _check(name: str, argv: list[str]) -> None:
    res = CliRunner().invoke(app, [*argv, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    path = HERE / f"{name}.json"
    if os.environ.get("WHYLLM_RECORD_GOLDEN") == "1":
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    _close(doc, json.loads(path.read_text(encoding="utf-8")), name)


@pytest.mark.filterwarnings("ignore:integrated gradients' completeness")
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(gemma_cli, name):
    _check(name, CASES[name])


@pytest.mark.filterwarnings("ignore:integrated gradients' completeness")
def test_golden_evaluate(gemma_cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(EVALUATE_PROMPTS) + "\n", encoding="utf-8")
    _check("evaluate", ["evaluate", str(prompts), "--methods", "occlusion,saliency,integrated_gradients",
                        "--steps", "32"])
