"""Training causal LMs from random initialisation and watching predictions emerge.

* :func:`train` writes a run directory (:mod:`whyllm.training.run_dir`) of checkpoints;
* :func:`emerge` runs whyllm's analyses over those checkpoints.
"""

from whyllm.training.data import TASKS, make_dataset
from whyllm.training.presets import PRESETS, Preset
from whyllm.training.run_dir import (
    checkpoints,
    latest_checkpoint,
    load_eval_examples,
    load_examples,
    read_run,
)
from whyllm.training.train import batch_indices, evaluate_batch, retrain, train

__all__ = [
    "PRESETS", "TASKS", "Preset", "batch_indices", "checkpoints", "evaluate_batch", "latest_checkpoint",
    "load_eval_examples", "load_examples", "make_dataset", "read_run", "retrain", "train",
]
