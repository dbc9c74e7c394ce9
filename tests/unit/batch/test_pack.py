"""Cross-prompt packing: packed results equal one-prompt-at-a-time results, row by row."""

from __future__ import annotations

import math

import pytest

import whyllm
from whyllm.batch import pack
from whyllm.batch.pack import explain_many
from whyllm.errors import InputError

ROWS = [  # different lengths, an error row in the middle, multi-token targets, a foil, no target
    {"prompt": "The capital of France is", "target": " Paris"},
    {"prompt": "When Mary and John went to the store, John gave a drink to", "target": " Mary",
     "foil": " John"},
    {"prompt": "", "target": " x"},
    {"prompt": "Alice and Bob talked. Bob said hello to", "target": " Alice"},
    {"prompt": "One two three", "target": None},
    {"prompt": "The dog", "target": " did not move", "foil": " ran"},
    {"prompt": "The dog barked.", "target": ""},
]


def _rows():
    return [{"id": f"r{i}", "row": i, **{"foil": None, **r}} for i, r in enumerate(ROWS)]


def _close(got, want, path="doc"):
    """Documents equal, floats within 1e-4."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(got, str):
        assert math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-4), (path, got, want)
    else:
        assert got == want, path


def _reference(model, row, options):
    try:
        return whyllm.explain(model, row["prompt"], target=row["target"], foil=row["foil"], **options)
    except InputError as e:
        return e


def _check(model, options):
    rows = _rows()
    packed = explain_many(model, rows, options)
    for row, got in zip(rows, packed, strict=True):
        want = _reference(model, row, options)
        if isinstance(want, Exception):
            assert type(got) is type(want) and str(got) == str(want), row["id"]
        else:
            assert not isinstance(got, Exception), (row["id"], got)
            _close(got.to_dict(), want.to_dict(), row["id"])


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_packed_occlusion_equals_one_prompt_at_a_time(tiny, arch):
    _check(tiny(arch), {"method": "occlusion"})


@pytest.mark.parametrize(
    "options",
    [
        {"method": "occlusion", "granularity": "word", "baseline": "unk"},
        {"method": "saliency"},  # not a masking method: only its score and faithfulness passes are packed
    ],
)
def test_packed_explain_options_equal_one_prompt_at_a_time(tiny, options):
    _check(tiny("llama"), options)


def test_small_budgets_split_passes_and_run_big_batches_alone(tiny, monkeypatch):
    monkeypatch.setattr(pack, "TOKEN_BUDGET", 40)  # most occlusion batches exceed it: they run alone
    monkeypatch.setattr(pack, "MAX_ROWS", 3)
    _check(tiny("gemma3_text"), {"method": "occlusion"})


def test_packing_runs_fewer_forward_passes(tiny, monkeypatch):
    model = tiny("llama")
    rows = [r for r in _rows() if r["prompt"] and r["target"]]
    calls = []
    forward = model.hf.forward
    monkeypatch.setattr(model.hf, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    for row in rows:
        _reference(model, row, {"method": "occlusion"})
    alone, calls[:] = len(calls), []
    explain_many(model, rows, {"method": "occlusion"})
    # four rounds for all the rows together (score, occlude, faithfulness, random orders; the last one's
    # ~120 inputs fill two passes of 64), against four or more passes per row alone
    assert len(calls) == 5 and alone >= 4 * len(rows) > len(calls)


def test_a_failed_pass_makes_error_rows_of_its_rows_only(tiny, monkeypatch):
    model = tiny("llama")
    rows = _rows()[:2]  # a short row and a long one
    real, calls = pack._embeds_forward, []

    def failing(m, seqs, keep):
        calls.append(len(seqs))
        if len(calls) == 2:  # the short row's occlusion pass (the long row's runs alone)
            raise RuntimeError("out of memory")
        return real(m, seqs, keep)

    monkeypatch.setattr(pack, "_embeds_forward", failing)
    monkeypatch.setattr(pack, "TOKEN_BUDGET", 100)
    short, long = explain_many(model, rows, {"method": "occlusion"})
    assert isinstance(short, RuntimeError) and "out of memory" in str(short)
    _close(long.to_dict(), _reference(model, rows[1], {"method": "occlusion"}).to_dict())


def _check_many(many, fn, model, options, field_rows):
    rows = _rows()
    packed = many(model, rows, options)
    for row, got in zip(rows, packed, strict=True):
        given = {k: row[k] for k in field_rows if row[k] is not None}
        try:
            want = fn(model, row["prompt"], **given, **options)
        except InputError as e:
            assert type(got) is type(e) and str(got) == str(e), row["id"]
            continue
        assert not isinstance(got, Exception), (row["id"], got)
        _close(got.to_dict(), want.to_dict(), row["id"])


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
@pytest.mark.parametrize("options", [{"top_k": 3, "positions": [-1]}, {}])
def test_packed_lens_equals_one_prompt_at_a_time(tiny, arch, options):
    # a multi-token target reads its first token; "" is an error row
    _check_many(pack.lens_many, whyllm.logit_lens, tiny(arch), options, ("target",))


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_packed_components_equals_one_prompt_at_a_time(tiny, arch):
    _check_many(pack.components_many, whyllm.components, tiny(arch), {"top_neurons": 3}, ("target", "foil"))
