import numpy as np
import pytest
import torch
from attr_common import PROMPT

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


def test_seeded_and_close_to_occlusion_in_sign(llama):
    kw = dict(target=" Mary", method="context_ablation", granularity="word", samples=48, seed=3,
              faithfulness=False)
    a = explain(llama, PROMPT, **kw)
    b = explain(llama, PROMPT, **kw)
    torch.testing.assert_close(a.token_scores, b.token_scores)
    assert a.extras["samples"] == 48 and 0 <= a.extras["r2"] <= 1


def test_bad_options(llama):
    with pytest.raises(InputError, match="samples"):
        explain(llama, PROMPT, method="context_ablation", samples=1)
    with pytest.raises(InputError, match="no option"):
        explain(llama, PROMPT, method="occlusion", samples=10)
