"""whyllm: why did the model say that?

Predictions, sampling, input attribution and model internals for any Hugging Face causal LM::

    import whyllm
    model = whyllm.load_model()                       # Gemma 3 270M, bundled
    whyllm.predict(model, "The capital of France is", target=" Paris")
"""

from whyllm.errors import (
    InputError,
    ModelLoadError,
    ParityError,
    PromptTooLongError,
    UnknownMethodError,
    UnsupportedModelError,
    WhyllmError,
)

__version__ = "0.1.0"

from whyllm.feedback.diff import diff  # noqa: E402
from whyllm.feedback.tune import tune  # noqa: E402
from whyllm.methods.attention import attention  # noqa: E402
from whyllm.methods.attribution import evaluate, explain, explain_step  # noqa: E402
from whyllm.methods.chat import chat_prompt, chat_reply, reply_text  # noqa: E402
from whyllm.methods.components import components  # noqa: E402
from whyllm.methods.generate import DecodingSettings, generate, sample, sampling_distribution  # noqa: E402
from whyllm.methods.lens import logit_lens  # noqa: E402
from whyllm.methods.patching import attribution_patch, compare_patching, patch  # noqa: E402
from whyllm.methods.predict import predict  # noqa: E402
from whyllm.methods.tracing import causal_trace  # noqa: E402
from whyllm.model import DEFAULT_MODEL, Model, ModelAdapter, cache_dir, load_model  # noqa: E402
from whyllm.model.adapters import AdaptedModel, load_adapter  # noqa: E402
from whyllm.results.attribution import AttributionResult, EvaluationResult  # noqa: E402
from whyllm.results.feedback import DiffResult, FeedbackListResult, TuneResult  # noqa: E402
from whyllm.results.generate import GenerationResult, SamplesResult, Step  # noqa: E402
from whyllm.results.internals import AttentionResult, ComponentsResult, LensResult, PatchResult  # noqa: E402
from whyllm.results.predict import Candidate, PredictResult, TargetScore  # noqa: E402

__all__ = [
    "AdaptedModel",
    "AttentionResult",
    "AttributionResult",
    "Candidate",
    "ComponentsResult",
    "DEFAULT_MODEL",
    "DecodingSettings",
    "DiffResult",
    "EvaluationResult",
    "FeedbackListResult",
    "GenerationResult",
    "InputError",
    "LensResult",
    "Model",
    "ModelAdapter",
    "ModelLoadError",
    "ParityError",
    "PatchResult",
    "PredictResult",
    "PromptTooLongError",
    "SamplesResult",
    "Step",
    "TargetScore",
    "TuneResult",
    "UnknownMethodError",
    "UnsupportedModelError",
    "WhyllmError",
    "__version__",
    "attention",
    "attribution_patch",
    "cache_dir",
    "causal_trace",
    "chat_prompt",
    "chat_reply",
    "compare_patching",
    "components",
    "diff",
    "evaluate",
    "explain",
    "explain_step",
    "generate",
    "load_adapter",
    "load_model",
    "logit_lens",
    "patch",
    "predict",
    "reply_text",
    "sample",
    "sampling_distribution",
    "tune",
]
