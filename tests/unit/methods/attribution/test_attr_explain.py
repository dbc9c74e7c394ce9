"""The public API: every method on every architecture, hook leaks, errors, results, steps, evaluation."""

import json
import math
import warnings

import pytest
import torch

from tests.helpers.attribution import PROMPT
from tests.unit.methods.attribution.test_attr_inputs import CHAT_TEMPLATE
from whyllm.errors import InputError, PromptTooLongError, UnknownMethodError
from whyllm.methods.attribution import evaluate, explain, explain_step, methods
from whyllm.methods.generate import generate
from whyllm.model.hooks import n_hooks
from whyllm.results.attribution import AttributionResult, EvaluationResult

METHODS = methods()


def _state(model):
    return ([p.requires_grad for p in model.hf.parameters()], model.hf.config._attn_implementation)


def _clean(model, before):
    assert n_hooks(model.hf) == 0
    assert _state(model) == before
    assert all(p.grad is None for p in model.hf.parameters())


def test_registry_lists_every_method():
    assert METHODS == sorted(["saliency", "input_x_gradient", "integrated_gradients", "occlusion",
                              "attention", "attention_rollout", "context_ablation"])
    from whyllm.methods.registry import get_analysis

    assert get_analysis("explain") is explain


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_every_architecture(any_tiny, method):
    before = _state(any_tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 4 IG steps on random models: completeness warnings
        r = explain(any_tiny, PROMPT, method=method, granularity="word", steps=4, samples=16) \
            if method == "context_ablation" else \
            explain(any_tiny, PROMPT, method=method, granularity="word", steps=4)
    _clean(any_tiny, before)
    assert isinstance(r, AttributionResult) and r.method == method and r.target_kind == "next_token"
    assert len(r.units) > 5 and all(math.isfinite(u.score) for u in r.units)
    assert r.faithfulness is not None and math.isfinite(r.faithfulness.deletion_auc)
    assert (r.steps is not None) == (method == "integrated_gradients")


@pytest.mark.parametrize("method", METHODS)
def test_no_leak_after_a_forced_error(llama, method):
    before = _state(llama)

    def boom(done, total):
        raise RuntimeError("forced")

    with pytest.raises(RuntimeError, match="forced"):
        explain(llama, PROMPT, method=method, steps=4, progress=boom)
    _clean(llama, before)


def test_round_trip_and_dataframe(llama):
    r = explain(llama, PROMPT, target=" Mary", foil=" John", granularity="word", steps=8)
    doc = json.loads(r.to_json())
    for key in ("model", "method", "target", "foil", "units", "faithfulness", "steps", "completeness_error"):
        assert key in doc
    assert set(doc["units"][0]) >= {"text", "score", "start", "end"}
    assert set(doc["faithfulness"]) >= {"comprehensiveness", "sufficiency", "deletion_auc", "fractions"}
    back = AttributionResult.from_dict(doc)
    assert back.to_dict() == r.to_dict()
    df = r.to_dataframe()
    assert list(df.columns) == ["rank", "text", "score", "start", "end", "role"] and len(df) == len(r.units)
    assert df.sort_values("rank").iloc[0]["text"] == r.ranked()[0].text


def test_per_token_result_round_trips(llama):
    r = explain(llama, PROMPT, target=" Mary and John", per_token=True, method="occlusion")
    back = AttributionResult.from_dict(json.loads(r.to_json()))
    torch.testing.assert_close(back.matrix, r.matrix)
    assert r.prompt == PROMPT and r.faithfulness is not None


def test_continuation_from_a_generation(llama):
    gen = generate(llama, PROMPT, max_new_tokens=3, greedy=True)
    r = explain(llama, PROMPT, continuation=gen, method="occlusion", faithfulness=False)
    assert r.target_ids == gen.ids and r.target_kind in ("token", "continuation")


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"method": "shap"}, UnknownMethodError, "integrated_gradients"),
    ({"steps": 0}, InputError, "steps"),
    ({"target": ""}, InputError, "empty"),
    ({"target": " Mary", "foil": " Mary"}, InputError, "same tokens"),
    ({"target": " Mary", "continuation": " John"}, InputError, "either"),
    ({"per_token": True}, InputError, "per_token"),
    ({"granularity": "paragraph"}, InputError, "granularity"),
    ({"fractions": (0.0,)}, InputError, "fractions"),
    ({"baseline": "nope nope"}, InputError, "baseline"),
])
def test_errors(llama, kwargs, error, match):
    with pytest.raises(error, match=match):
        explain(llama, PROMPT, **kwargs)


def test_target_or_foil_that_does_not_tokenize(llama):
    with pytest.raises(InputError, match="does not tokenize"):
        explain(llama, PROMPT, target="<unk>")  # the unknown token: no real continuation
    with pytest.raises(InputError, match="foil"):
        explain(llama, PROMPT, target=" Mary", foil="")


def test_prompt_over_the_context_window(llama):
    with pytest.raises(PromptTooLongError):
        explain(llama, "word " * 300)
    with pytest.raises(PromptTooLongError):
        explain(llama, "word " * 120, target=" one two three four five six seven eight nine ten")


def test_explain_step_uses_the_decoding_settings(llama):
    gen = generate(llama, PROMPT, max_new_tokens=4, temperature=0.8, top_k=5, seed=1)
    r = explain_step(llama, gen, 2, method="occlusion")
    s, chosen = r.step, gen.steps[2]
    assert s["id"] == chosen.id and s["kept"] <= 5 and s["step"] == 2
    assert s["sample_prob"] == pytest.approx(chosen.sample_prob, rel=1e-4)
    assert s["runner_up"]["id"] != chosen.id and not s["runner_up"]["cut"]
    assert r.target_kind == "contrast" and r.foil_ids == (s["runner_up"]["id"],)
    assert len(r.input_ids) == len(gen.prompt_ids) + 2
    plain = explain_step(llama, gen, 2, method="saliency", contrast=False, faithfulness=False)
    assert plain.target_kind == "sampled"
    assert plain.score == pytest.approx(math.log(chosen.sample_prob), abs=1e-4)
    with pytest.raises(InputError, match="out of range"):
        explain_step(llama, gen, 9)


def test_explain_step_greedy_contrasts_with_the_cut_runner_up(llama):
    gen = generate(llama, PROMPT, max_new_tokens=2, greedy=True)
    r = explain_step(llama, gen, 0, method="saliency", faithfulness=False)
    assert r.step["kept"] == 1 and r.step["runner_up"]["cut"] and r.target_kind == "contrast"


def test_chat_prompt_by_turn():
    from whyllm.model.tiny import tiny_model

    model = tiny_model("llama")
    model.tokenizer.chat_template = CHAT_TEMPLATE
    msgs = [{"role": "system", "content": "Mary is kind."}, {"role": "user", "content": "Who got the drink?"}]
    r = explain(model, msgs, method="occlusion", granularity="turn")
    assert [u.role for u in r.units] == ["system", "user"]
    assert all(float(r.token_scores[i]) == 0 for i in range(len(r.input_ids))
               if not any(u.start <= i < u.end for u in r.units))  # template tokens: not attributed


def test_evaluate_ranks_methods(llama):
    prompts = [PROMPT, {"prompt": "The capital of France is", "target": " Paris"}]
    r = evaluate(llama, prompts, methods=["occlusion", "attention", "saliency"])
    assert isinstance(r, EvaluationResult) and len(r.rows) == 6
    assert [row["rank"] for row in r.ranking] == [1, 2, 3]
    assert EvaluationResult.from_dict(json.loads(r.to_json())).to_dict() == r.to_dict()
    assert list(r.to_dataframe().columns)[:2] == ["prompt", "method"]
    with pytest.raises(UnknownMethodError):
        evaluate(llama, prompts, methods=["nope"])
    with pytest.raises(InputError):
        evaluate(llama, [{"text": "x"}])


def test_predicted_target_with_a_multi_token_foil(llama):
    r = explain(llama, PROMPT, foil=" John and Mary", method="occlusion", faithfulness=False)
    pred = explain(llama, PROMPT, method="occlusion", faithfulness=False)
    both = explain(llama, PROMPT, target=pred.target, foil=" John and Mary", method="occlusion",
                   faithfulness=False)
    assert r.target_kind == "contrast" and r.score == pytest.approx(both.score, abs=1e-5)
    torch.testing.assert_close(r.token_scores, both.token_scores)
