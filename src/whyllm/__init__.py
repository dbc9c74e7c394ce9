"""whyllm: why did the model say that?

Predictions, sampling, input attribution and model internals for any Hugging Face causal LM::

    import whyllm
    model = whyllm.load_model()                       # Gemma 3 270M, bundled
    whyllm.predict(model, "The capital of France is", target=" Paris")
"""

from whyllm import batch  # a callable module: whyllm.batch(...) runs a batch
from whyllm._version import __version__
from whyllm.errors import (
    InputError,
    ModelLoadError,
    ParityError,
    PromptTooLongError,
    UnknownMethodError,
    UnsupportedModelError,
    WhyllmError,
)
from whyllm.feedback.diff import diff
from whyllm.feedback.tune import tune
from whyllm.methods.attention import attention
from whyllm.methods.attribution import evaluate, explain, explain_step
from whyllm.methods.circuits import circuit
from whyllm.methods.components import components
from whyllm.methods.generate import DecodingSettings, chat_reply, generate, sample, sampling_distribution
from whyllm.methods.lens import logit_lens
from whyllm.methods.params import params
from whyllm.methods.patching import attribution_patch, compare_patching, patch
from whyllm.methods.predict import predict
from whyllm.methods.qk import qk
from whyllm.methods.tracing import causal_trace
from whyllm.model import DEFAULT_MODEL, Model, ModelAdapter, cache_dir, load_model
from whyllm.model.adapters import AdaptedModel, load_adapter
from whyllm.model.chat import chat_prompt, reply_text
from whyllm.results.attribution import AttributionResult, EvaluationResult
from whyllm.results.batch import BatchSummary
from whyllm.results.circuits import CircuitResult
from whyllm.results.feedback import DiffResult, FeedbackListResult, TuneResult
from whyllm.results.generate import GenerationResult, SamplesResult, Step
from whyllm.results.internals import AttentionResult, ComponentsResult, LensResult, PatchResult
from whyllm.results.params import InfluenceResult, ParamsResult
from whyllm.results.predict import Candidate, PredictResult, TargetScore
from whyllm.results.qk import QKResult
from whyllm.results.training import EmergeResult, TrainResult
from whyllm.training.emerge import emerge
from whyllm.training.influence import influence
from whyllm.training.train import train

__all__ = [
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
    "__version__",
]
