"""Faithfulness metrics recomputed by hand from masked runs."""

import pytest
import torch

from tests.helpers.attribution import PROMPT, reference_logprob
from whyllm.methods.attribution import explain
from whyllm.methods.attribution.baselines import baseline_embeddings


def _f_without(model, x, base, mary, tokens):
    e = x.clone()
    e[0, tokens] = base[0, tokens]
    with torch.no_grad():
        return float(reference_logprob(model, e, mary)[0])


def test_metrics_by_hand(setup):
    model, prep, x, _, mary = setup
    base, _ = baseline_embeddings(model, prep, x, "mean")  # the default replacement
    r = explain(model, PROMPT, target=" Mary", method="occlusion", fractions=(0.2, 0.5))
    f = r.faithfulness
    assert f.replacement == "mean" == r.baseline
    ranked = r.ranked()
    n = len(r.units)
    full = _f_without(model, x, base, mary, [])
    assert f.full_score == pytest.approx(full, abs=1e-4) and r.score == pytest.approx(full, abs=1e-4)
    for k, comp, suff in zip(f.fractions, f.comprehensiveness_at, f.sufficiency_at, strict=True):
        c = max(1, round(k * n))
        top = [u.start for u in ranked[:c]]
        rest = [u.start for u in ranked[c:]]
        assert comp == pytest.approx(full - _f_without(model, x, base, mary, top), abs=1e-4)
        assert suff == pytest.approx(full - _f_without(model, x, base, mary, rest), abs=1e-4)
    assert f.deletion_fractions[0] == 0 and f.deletion_fractions[-1] == 1
    assert f.empty_score == pytest.approx(_f_without(model, x, base, mary, list(range(1, prep.n))), abs=1e-4)
    xs, ys = f.deletion_fractions, [s - full for s in f.deletion_scores]
    assert f.deletion_auc == pytest.approx(sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2
                                               for i in range(len(xs) - 1)))


def test_top_one_comprehensiveness_is_the_top_occlusion_score(llama):
    """Removing the single best unit is exactly what occlusion measured for it."""
    r = explain(llama, PROMPT, target=" Mary", method="occlusion", fractions=(0.05,))
    assert r.faithfulness.comprehensiveness_at[0] == pytest.approx(r.ranked()[0].score, abs=1e-5)
    assert r.faithfulness.comprehensiveness_at[0] >= max(u.score for u in r.units) - 1e-5


def test_turned_off(llama):
    assert explain(llama, PROMPT, method="saliency", faithfulness=False).faithfulness is None


def test_one_replacement_for_every_method(llama):
    """By default every method's metrics erase with the mean embedding, so ``evaluate`` compares them;
    an explicit baseline is used by the method and the metrics alike."""
    ig = explain(llama, PROMPT, target=" Mary", steps=8)
    occ = explain(llama, PROMPT, target=" Mary", method="occlusion")
    assert ig.baseline == "<unk>" and occ.baseline == "mean"  # tiny llama's pad row is zero: unk
    assert ig.faithfulness.replacement == occ.faithfulness.replacement == "mean"
    # same replacement: removing everything gives the same score whichever method ranked
    assert ig.faithfulness.empty_score == pytest.approx(occ.faithfulness.empty_score, abs=1e-5)
    given = explain(llama, PROMPT, target=" Mary", method="occlusion", baseline="unk")
    assert given.baseline == given.faithfulness.replacement == "<unk>"


def test_random_order_baseline_by_hand(setup):
    """The baseline curve is the mean, point by point, of the seeded random deletion orders."""
    from whyllm.methods.attribution.faithfulness import RANDOM_ORDERS, _random_orders
    from whyllm.results.attribution import Faithfulness

    model, prep, x, _, mary = setup
    base, _ = baseline_embeddings(model, prep, x, "mean")
    r = explain(model, PROMPT, target=" Mary", method="occlusion")
    f = r.faithfulness
    n = len(r.units)
    starts = [u.start for u in r.units]
    assert f.random_orders == RANDOM_ORDERS and len(f.random_deletion_scores) == len(f.deletion_scores)
    assert f.random_deletion_scores[0] == f.full_score
    assert f.random_deletion_scores[-1] == f.empty_score  # every order ends with every unit removed
    orders = _random_orders(n)
    assert len({tuple(o) for o in orders}) == RANDOM_ORDERS and orders == _random_orders(n)  # seeded
    for frac, got in zip(f.deletion_fractions[1:-1], f.random_deletion_scores[1:-1], strict=True):
        c = round(frac * n)
        want = sum(_f_without(model, x, base, mary, [starts[k] for k in o[:c]]) for o in orders) / len(orders)
        assert got == pytest.approx(want, abs=1e-4)
    assert f.random_deletion_auc == pytest.approx(f._auc(f.random_deletion_scores))
    back = Faithfulness.from_dict(f.to_dict())
    assert back.random_deletion_scores == pytest.approx(f.random_deletion_scores)
    assert back.random_orders == f.random_orders
    assert back.random_deletion_auc == pytest.approx(f.random_deletion_auc)
    old = {k: v for k, v in f.to_dict().items() if k != "random_deletion"}  # a document from before
    assert Faithfulness.from_dict(old).random_deletion_auc is None
