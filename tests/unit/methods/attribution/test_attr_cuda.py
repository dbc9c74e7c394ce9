"""The same attributions on a GPU as on the CPU (runs only where CUDA is available)."""

import copy
import warnings

import pytest
import torch

from tests.helpers.attribution import PROMPT
from whyllm.methods.attribution import explain, explain_step, methods
from whyllm.methods.generate import generate
from whyllm.model.base import Model
from whyllm.model.hooks import n_hooks

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module", params=["llama", "gemma3_text"])
def pair(request):
    from whyllm.model.tiny import tiny_model

    cpu = tiny_model(request.param)
    gpu = Model(hf=copy.deepcopy(cpu.hf).to("cuda"), tokenizer=cpu.tokenizer, name=cpu.name)
    return cpu, gpu


@pytest.mark.parametrize("method", methods())
def test_every_method_agrees_with_the_cpu(pair, method):
    cpu, gpu = pair
    kw = dict(target=" Mary and", foil=None, method=method, granularity="word", steps=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # completeness warnings on random models
        a, b = explain(cpu, PROMPT, **kw), explain(gpu, PROMPT, **kw)
    torch.testing.assert_close(b.token_scores, a.token_scores, rtol=1e-3, atol=1e-4)
    assert b.faithfulness.comprehensiveness == pytest.approx(a.faithfulness.comprehensiveness, abs=1e-3)
    assert n_hooks(gpu.hf) == 0 and gpu.hf.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_per_token_contrast_and_steps_on_the_gpu(pair, method):
    cpu, gpu = pair
    kw = dict(target=" Mary and John", per_token=True, method=method, steps=8, faithfulness=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 8 steps on a random model: completeness warnings
        a, b = explain(cpu, PROMPT, **kw), explain(gpu, PROMPT, **kw)
    torch.testing.assert_close(b.matrix, a.matrix, rtol=1e-3, atol=1e-4)
    c = explain(gpu, PROMPT, target=" Mary", foil=" John", method=method, steps="auto", faithfulness=False)
    assert c.score == pytest.approx(explain(cpu, PROMPT, target=" Mary", foil=" John", method="attention",
                                            faithfulness=False).score, abs=1e-3)
    gen = generate(cpu, PROMPT, max_new_tokens=3, temperature=0.8, top_k=10, seed=0)
    s = explain_step(gpu, gen, 1, method=method, steps=8)
    assert s.step["sample_prob"] == pytest.approx(gen.steps[1].sample_prob, rel=1e-3)
