"""Guard the public API: ``whyllm.__all__`` is exactly the list below, and every name imports."""

from __future__ import annotations

import importlib

import pytest

import whyllm

# The public API. Adding a name to whyllm/__init__.py means adding it here (and the other way round).
EXPECTED = [
    "AdaptedModel",
    "AttentionResult",
    "AttributionResult",
    "BatchSummary",
    "Candidate",
    "CircuitResult",
    "ComponentsResult",
    "DEFAULT_MODEL",
    "DecodingSettings",
    "DiffResult",
    "EmergeResult",
    "EvaluationResult",
    "FeedbackListResult",
    "GenerationResult",
    "InfluenceResult",
    "InputError",
    "LensResult",
    "Model",
    "ModelAdapter",
    "ModelLoadError",
    "ParamsResult",
    "ParityError",
    "PatchResult",
    "PredictResult",
    "PromptTooLongError",
    "QKResult",
    "SamplesResult",
    "Step",
    "TargetScore",
    "TrainResult",
    "TuneResult",
    "UnknownMethodError",
    "UnsupportedModelError",
    "WhyllmError",
    "__version__",
    "attention",
    "attribution_patch",
    "circuit",
    "batch",
    "cache_dir",
    "causal_trace",
    "chat_prompt",
    "chat_reply",
    "compare_patching",
    "components",
    "diff",
    "emerge",
    "evaluate",
    "explain",
    "explain_step",
    "generate",
    "influence",
    "load_adapter",
    "load_model",
    "logit_lens",
    "params",
    "patch",
    "predict",
    "qk",
    "reply_text",
    "sample",
    "sampling_distribution",
    "train",
    "tune",
]


def test_all_is_exactly_the_expected_list():
    assert sorted(whyllm.__all__) == sorted(EXPECTED)
    assert len(set(whyllm.__all__)) == len(whyllm.__all__), "duplicates in __all__"


@pytest.mark.parametrize("name", EXPECTED)
def test_every_name_imports(name):
    module = importlib.import_module("whyllm")
    assert getattr(module, name) is not None
    namespace: dict = {}
    exec(f"from whyllm import {name}", namespace)  # noqa: S102
    assert namespace[name] is getattr(whyllm, name)


def test_public_callables_are_documented():
    for name in EXPECTED:
        obj = getattr(whyllm, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"whyllm.{name} has no docstring"


def test_errors_share_one_base():
    for name in ("InputError", "ModelLoadError", "ParityError", "PromptTooLongError", "UnknownMethodError",
                 "UnsupportedModelError"):
        assert issubclass(getattr(whyllm, name), whyllm.WhyllmError)
    assert issubclass(whyllm.UnsupportedModelError, whyllm.ModelLoadError)
    assert issubclass(whyllm.ModelLoadError, OSError) and issubclass(whyllm.InputError, ValueError)
