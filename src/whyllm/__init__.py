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

from whyllm.methods.generate import DecodingSettings, generate, sample  # noqa: E402
from whyllm.methods.predict import predict  # noqa: E402
from whyllm.model import DEFAULT_MODEL, Model, ModelAdapter, load_model  # noqa: E402
from whyllm.results.generate import GenerationResult, SamplesResult, Step  # noqa: E402
from whyllm.results.predict import Candidate, PredictResult, TargetScore  # noqa: E402

__all__ = [
    "DEFAULT_MODEL",
    "Candidate",
    "DecodingSettings",
    "GenerationResult",
    "InputError",
    "Model",
    "ModelAdapter",
    "ModelLoadError",
    "ParityError",
    "PredictResult",
    "PromptTooLongError",
    "SamplesResult",
    "Step",
    "TargetScore",
    "UnknownMethodError",
    "UnsupportedModelError",
    "WhyllmError",
    "__version__",
    "generate",
    "load_model",
    "predict",
    "sample",
]
