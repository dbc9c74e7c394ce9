"""A few views checked as exact text: what a user sees must not drift unnoticed."""

from __future__ import annotations

import math

import torch

from tests.helpers.render import plain_text as _text
from whyllm.render.dispatch import html, terminal
from whyllm.results.attribution import EvaluationResult
from whyllm.results.predict import Candidate, PredictResult, TargetScore


def _predict() -> PredictResult:
    lp = [math.log(p) for p in (0.5, 0.25, 0.0001)]
    top = tuple(Candidate(t, i, math.exp(v), v, r + 1)
                for r, (t, i, v) in enumerate(zip([" Paris", " the", "\n"], [7, 3, 9], lp, strict=True)))
    return PredictResult(
        prompt="The capital of France is", input_ids=(1, 2), input_tokens=("<bos>", "The"), top=top,
        entropy=1.5, target=TargetScore(" Paris", (7,), (" Paris",), (lp[0],), (1,)),
        logprobs=torch.tensor(lp), meta={"model": "m", "method": "predict", "params": {}},
    )


def test_predict_terminal_view():
    assert _text(_predict()) == (
        "next token after The capital of France is\n"
        "                                          \n"
        "  rank   token    id      prob   logprob  \n"
        " ──────────────────────────────────────── \n"
        "     1   ␣Paris    7     0.500    -0.693  \n"
        "     2   ␣the      3     0.250    -1.386  \n"
        "     3   ↵         9   1.0e-04    -9.210  \n"
        "                                          \n"
        "entropy: 1.500 nats\n"
        "target ␣Paris: prob 0.5, logprob -0.693, rank of first token 1\n"
    )


def test_evaluation_html_table():
    rows = ({"rank": 1, "method": "occlusion", "comprehensiveness": 2.0, "sufficiency": 0.5,
             "deletion_auc": -1.25, "random_deletion_auc": -0.5, "beats_random": 0.75, "seconds": 0.5,
             "mean_rank": 1.0},)
    r = EvaluationResult(prompts=("p",), methods=("occlusion",), rows=rows, ranking=rows, settings={},
                         meta={"model": "m", "method": "evaluate", "params": {}})
    assert html(r) == (
        "<h2>Attribution methods ranked by faithfulness (1 prompts)</h2><table><tr><th>rank</th>"
        "<th>method</th><th>comprehensiveness ↑</th><th>sufficiency ↓</th><th>deletion AUC ↓</th>"
        "<th>random order AUC</th><th>beats random</th>"
        "<th>seconds</th></tr><tr><td>1</td><td>occlusion</td><td>2.000</td><td>0.500</td><td>-1.250</td>"
        "<td>-0.500</td><td>75%</td><td>0.50</td></tr></table><p class='dim'>random order AUC: the "
        "deletion AUC of deleting units in random orders, the AUC to beat; beats random: the share of "
        "prompts where the method&#x27;s order lowers the margin faster</p>"
    )


def test_unknown_types_fall_back_to_repr():
    assert _text(terminal(object())).startswith("<object object at")
    assert html("<x>") == "<pre>&#x27;&lt;x&gt;&#x27;</pre>"
