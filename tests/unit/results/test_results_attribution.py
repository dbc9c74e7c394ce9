import pytest
import torch

from whyllm.results.attribution import AttributionResult, EvaluationResult, Faithfulness, Unit


def _result(**over):
    base = dict(
        prompt="a b", method="occlusion", granularity="token", target=" c", target_ids=(7,), foil=None,
        foil_ids=None, target_kind="token", score=-1.5, input_ids=(1, 5, 6),
        input_tokens=("<bos>", "a", " b"),
        token_scores=torch.tensor([0.0, 0.5, -0.25]), units=(Unit("a", 0.5, 1, 2), Unit(" b", -0.25, 2, 3)),
        faithfulness=Faithfulness((0.5,), (1.0,), (0.25,), (0.0, 0.5, 1.0), (-1.5, -2.5, -3.0), -1.5, -3.0),
    )
    return AttributionResult(**{**base, **over})


def test_faithfulness_summary_values():
    f = _result().faithfulness
    assert f.comprehensiveness == 1.0 and f.sufficiency == 0.25
    assert f.deletion_auc == pytest.approx(0.5 * (0 - 1.0) / 2 + 0.5 * (-1.0 - 1.5) / 2)


@pytest.mark.parametrize("bad", [
    {"input_tokens": ("a",)},
    {"token_scores": torch.zeros(2)},
    {"granularity": "paragraph"},
    {"units": (Unit("x", 1.0, 2, 5),)},
    {"matrix": torch.zeros(2, 2)},
    {"score": float("nan")},
])
def test_validation(bad):
    with pytest.raises(ValueError):
        _result(**bad)


def test_unit_and_faithfulness_validation():
    with pytest.raises(ValueError):
        Unit("x", 1.0, 3, 3)
    with pytest.raises(ValueError):
        Faithfulness((0.5, 0.2), (1.0,), (0.25,), (0.0, 1.0), (1.0, 0.0), 1.0, 0.0)


def test_round_trip_and_ranking():
    r = _result()
    assert AttributionResult.from_dict(r.to_dict()).to_dict() == r.to_dict()
    assert [u.text for u in r.ranked()] == ["a", " b"]
    assert r.to_dict()["kind"] == "attribution" and r.to_dict()["foil"] is None


def test_evaluation_validation():
    rows = ({"prompt": 0, "method": "a", "comprehensiveness": 1, "sufficiency": 0, "deletion_auc": -1,
             "seconds": 1},)
    ranking = ({"rank": 1, "method": "a"},)
    EvaluationResult(prompts=("p",), methods=("a",), rows=rows, ranking=ranking)
    with pytest.raises(ValueError):
        EvaluationResult(prompts=("p", "q"), methods=("a",), rows=rows, ranking=ranking)
