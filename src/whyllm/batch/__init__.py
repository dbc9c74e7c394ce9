"""Batch explanations over a dataset: any registered analysis over every row, resumable, in Parquet parts.

``whyllm.batch("prompts.jsonl", ["predict", "explain:occlusion"], "out/")`` runs each analysis on each
row, writes rows as Parquet parts under ``out/parts`` (atomically: a part is whole or absent) and a
manifest, and skips on a rerun every (id, method, parameters) already written. Engines: ``embedded``
(default, this process) and ``ray`` (an actor pool, :mod:`whyllm.batch.ray_engine`). See docs/batch.md.
"""

import sys
import types

from whyllm.batch.engine import RunSpec, parse_run
from whyllm.batch.io import read_input, read_table
from whyllm.batch.run import batch, weights_hash
from whyllm.results.batch import BatchSummary

__all__ = ["BatchSummary", "RunSpec", "batch", "parse_run", "read_input", "read_table", "weights_hash"]


class _CallableModule(types.ModuleType):
    """``whyllm.batch(...)`` calls :func:`whyllm.batch.run.batch`; ``whyllm.batch.io`` stays the package's."""

    def __call__(self, *args, **kwargs):
        return batch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
