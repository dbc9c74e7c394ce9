"""The Python API under generated arguments: a result, or one of whyllm's documented errors."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import budget
from tests.fuzz.strategies import FLOATS, INTS, TEXT
from whyllm.errors import WhyllmError
from whyllm.methods.registry import ANALYSES
from whyllm.results.base import Result

SKIP = {"progress", "on_step", "stop", "baseline", "continuation", "max_memory", "fractions"}
# options whose generated values could only make a run long, not wrong (bounded here to keep the budget)
SMALL = {"steps": st.integers(-2, 40), "max_new_tokens": st.integers(-2, 12), "n": st.integers(-2, 4),
         "samples": st.integers(-2, 40), "max_steps": st.integers(-2, 64)}


def _strategy(name: str, annotation) -> st.SearchStrategy:
    if name in SMALL:
        return SMALL[name]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in \
        typing.get_args(annotation)
    base = args[0] if optional and len(args) == 1 else annotation
    origin = typing.get_origin(base)
    if base is int:
        s = INTS
    elif base is float:
        s = st.one_of(FLOATS, INTS)
    elif base is bool:
        s = st.booleans()
    elif base is str:
        s = TEXT
    elif origin in (list, tuple, Sequence):
        s = st.lists(INTS, max_size=4)
    else:
        s = st.one_of(TEXT, INTS)
    return st.one_of(st.none(), s) if optional else s


def _calls():
    out = []
    for entry in ANALYSES.values():
        sig = inspect.signature(entry.fn, eval_str=True)
        params = [p for p in list(sig.parameters.values())[1:]
                  if p.name not in SKIP and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        fields = {p.name: _strategy(p.name, p.annotation) for p in params}
        out.append(st.tuples(st.just(entry.name), st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in entry.example},  # the required ones, always
            optional={k: v for k, v in fields.items() if k not in entry.example})))
    return st.one_of(out)


@budget(700)
@given(call=_calls())
def test_api_returns_a_result_or_a_whyllm_error(model, clean_after, call):
    name, kwargs = call
    try:
        result = ANALYSES[name].fn(model, **kwargs)
    except WhyllmError:
        return
    except Warning:  # warnings are errors in this suite: a warned run (e.g. IG's completeness) is fine
        return
    assert isinstance(result, Result)
    result.to_json()  # every result serialises (non-finite numbers as null)


def test_every_analysis_is_fuzzed():
    assert len(ANALYSES) >= 10


@pytest.mark.parametrize("value", ["hi \ud800", "\udcff"])
def test_lone_surrogates_are_input_errors(model, value):
    from whyllm import predict
    from whyllm.errors import InputError

    with pytest.raises(InputError, match="lone surrogate"):
        predict(model, value)
    with pytest.raises(InputError, match="lone surrogate"):
        predict(model, "The capital of France is", target=value)
