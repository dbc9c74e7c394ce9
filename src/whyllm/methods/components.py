"""Direct logit attribution: which heads, MLPs and embeddings write the target logit.

The decomposition itself is :mod:`whyllm.methods.engine.direct`; this module runs it at the last
position and lists the neurons of the MLPs with the largest effect.
"""

from __future__ import annotations

import torch

from whyllm.methods.engine.args import check_int, target_and_foil
from whyllm.methods.engine.direct import Decomposition, capture_direct, decompose
from whyllm.model.base import Model
from whyllm.results.base import meta
from whyllm.results.internals import ComponentsResult, Neuron

__all__ = ["components", "components_from"]


def _top_neurons(dec: Decomposition, n: int, n_mlps: int = 3) -> tuple[Neuron, ...]:
    mlps = sorted((p for p in dec.parts if p.kind == "mlp"), key=lambda p: -abs(p.value))[:n_mlps]
    out = []
    for p in mlps:
        v, a = dec.neuron_values[p.layer], dec.neuron_acts[p.layer]
        for i in v.abs().topk(min(n, v.shape[0])).indices.tolist():
            out.append(Neuron(p.layer, i, float(a[i]), float(v[i])))
    return tuple(out)


def components(
    model: Model, prompt: str, *, target: str | None = None, foil: str | None = None, top_neurons: int = 10
) -> ComponentsResult:
    """Direct logit attribution of the next-token logit to embeddings, heads and MLPs.

    Args:
        model: from :func:`whyllm.load_model`.
        prompt: the text; the last position is decomposed.
        target: the token to explain (first token of the text); default the model's top prediction.
        foil: explain ``target - foil`` logit difference instead.
        top_neurons: neurons listed for each of the three MLPs with the largest effect (0: none).

    Returns:
        A :class:`ComponentsResult`; its ``parts`` sum to ``total`` (the real pre-soft-cap logit or
        difference) to float precision (about 1e-4 relative in float32), reported as ``error``.
    """
    check_int(top_neurons, "top_neurons", minimum=0)
    ids = model.encode(prompt)  # (1, pos)
    with torch.no_grad():
        with capture_direct(model) as acts:
            real = model.hf(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()
    return components_from(model, prompt, ids[0].tolist(), acts.at(-1), real, target=target, foil=foil,
                           top_neurons=top_neurons)


def components_from(
    model: Model, prompt: str, ids: list[int], acts: dict[str, torch.Tensor], real: torch.Tensor, *,
    target: str | None = None, foil: str | None = None, top_neurons: int = 10,
) -> ComponentsResult:
    """The :func:`components` result from its forward pass: ``acts`` at the last position, ``real`` logits.

    Args:
        model: the model.
        prompt: the text.
        ids: the prompt's token ids.
        acts: :meth:`~whyllm.methods.engine.direct.DirectActivations.at` the last position.
        real: ``(vocab,)`` the model's logits there.
        target: as :func:`components` takes it.
        foil: as :func:`components` takes it.
        top_neurons: as :func:`components` takes it.
    """
    with torch.no_grad():
        tid, fid = target_and_foil(model, target, foil, real)
        dec = decompose(model, acts, tid, fid)
    s = sum(p.value for p in dec.parts)
    texts = model.token_texts([tid] + ([fid] if fid is not None else []))
    return ComponentsResult(
        prompt=prompt, input_ids=tuple(ids), input_tokens=tuple(model.token_texts(ids)),
        position=len(ids) - 1, target=target, target_id=tid, target_token=texts[0],
        parts=tuple(dec.parts), total=dec.total, error=s - dec.total,
        logit=float(real[tid] - (real[fid] if fid is not None else 0.0)),
        n_layers=model.adapter.n_layers, n_heads=model.adapter.n_heads, foil=foil, foil_id=fid,
        foil_token=texts[1] if fid is not None else None, neurons=_top_neurons(dec, top_neurons),
        softcap=model.adapter.softcap, meta=meta(model, "components", target=target, foil=foil,
                                                 top_neurons=top_neurons),
    )
