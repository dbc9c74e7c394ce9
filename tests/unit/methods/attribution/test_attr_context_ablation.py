import numpy as np
import pytest
import torch

from tests.helpers.attribution import PROMPT
from whyllm.errors import InputError
from whyllm.methods.attribution import explain
from whyllm.methods.attribution.context_ablation import lasso


def test_lasso_without_penalty_is_least_squares():
    rng = np.random.default_rng(0)
    x = (rng.random((80, 5)) < 0.5).astype(float)
    y = x @ np.array([1.0, -2.0, 0.0, 0.5, 3.0]) + 0.7 + 0.01 * rng.standard_normal(80)
    w, b = lasso(x, y, 0.0)
    coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(80)], y, rcond=None)
    np.testing.assert_allclose(np.r_[w, b], coef, atol=1e-5)


def test_lasso_penalty_zeroes_small_weights():
    rng = np.random.default_rng(1)
    x = (rng.random((200, 4)) < 0.5).astype(float)
    y = x @ np.array([2.0, 0.0, 0.0, -1.0])
    w, _ = lasso(x, y, 0.1)
    assert w[1] == 0 and w[2] == 0 and w[0] > 1.5 and w[3] < -0.5


def test_seeded(llama):
    kw = dict(target=" Mary", method="context_ablation", granularity="word", samples=48, seed=3,
              faithfulness=False)
    a = explain(llama, PROMPT, **kw)
    b = explain(llama, PROMPT, **kw)
    torch.testing.assert_close(a.token_scores, b.token_scores)
    assert a.extras["samples"] == 48 and 0 <= a.extras["r2"] <= 1
    c = explain(llama, PROMPT, **{**kw, "seed": 4})
    assert not torch.equal(a.token_scores, c.token_scores)  # the seed matters


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_occlusion_in_sign_where_occlusion_is_large(llama, seed):
    """Both estimate each word's effect; where occlusion's effect is large, the signs agree."""
    kw = dict(target=" Mary", granularity="word", faithfulness=False)
    ablation = explain(llama, PROMPT, method="context_ablation", samples=256, seed=seed, **kw)
    occlusion = explain(llama, PROMPT, method="occlusion", **kw)
    x = torch.tensor([u.score for u in ablation.units])
    y = torch.tensor([u.score for u in occlusion.units])
    large = y.abs() >= y.abs().quantile(0.5)  # the half of the words occlusion finds mattering most
    assert float((x.sign() == y.sign())[large].float().mean()) >= 0.75


def test_bad_options(llama):
    with pytest.raises(InputError, match="samples"):
        explain(llama, PROMPT, method="context_ablation", samples=1)
    with pytest.raises(InputError, match="no option"):
        explain(llama, PROMPT, method="occlusion", samples=10)
