"""Baselines: what an "absent" token looks like, and which one each method uses by default.

Every baseline policy of whyllm is here:

* :data:`ERASURE_BASELINE`: methods that replace tokens inside an otherwise real input (occlusion,
  context ablation) and the faithfulness metrics of every method use the mean token embedding, an
  "average token" with no identity of its own. A specific token (pad) placed in a sentence is itself
  evidence, and what the model reads from it depends on which token it is (``bench/baselines.py``).
* Path methods (integrated gradients) start from a content-free input made of one real token (the
  default token: pad on most models), whose path converges best.
* An explicit baseline applies to the method and to its faithfulness metrics alike.
"""

from __future__ import annotations

import torch
from torch import Tensor

from whyllm.errors import InputError
from whyllm.methods.attribution.inputs import Prepared
from whyllm.model.base import Model, check_text

__all__ = ["ERASURE_BASELINE", "baseline_embeddings", "resolve"]

ERASURE_BASELINE = "mean"

_DEFAULT_CANDIDATES = ("pad", "unk", "mask", "eos")


def _embedding_norms(model: Model, ids: list[int]) -> Tensor:
    with torch.no_grad():
        return model.adapter.embed(torch.tensor([ids], device=model.device))[0].float().norm(dim=-1)  # (n,)


def _default_token(model: Model) -> int | None:
    """The first of pad, unk, mask, eos whose embedding is not degenerate (near zero).

    Some models initialise the pad row to zero (``padding_idx``); a zero baseline makes the first
    RMSNorm's scale blow up along the path, so integrated gradients never converges.
    """
    vocab = model.adapter.d_vocab
    sample = list(range(0, vocab, max(1, vocab // 2048)))
    typical = float(_embedding_norms(model, sample).median())
    for name in _DEFAULT_CANDIDATES:
        tid = getattr(model.tokenizer, f"{name}_token_id", None)
        if tid is not None and tid < vocab and float(_embedding_norms(model, [tid])[0]) > 0.25 * typical:
            return int(tid)
    return None


def _token_id(model: Model, name: str) -> int | None:
    if name == "default":
        return _default_token(model)
    if name in ("pad", "unk", "eos", "bos", "mask"):
        return getattr(model.tokenizer, f"{name}_token_id", None)
    ids = model.tokenizer(check_text(name, "baseline token"), add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InputError(f"baseline token {name!r} is {len(ids)} tokens for {model.name} ({ids}); "
                         "give one token, 'pad', 'unk', 'mask', 'zero' or a tensor")
    return int(ids[0])


def baseline_embeddings(
    model: Model, prep: Prepared, x: Tensor, baseline: str | Tensor,
) -> tuple[Tensor, str]:
    """Embeddings of the "absent" input, ``(1, pos, d_model)``, and a label for it.

    Masked tokens (BOS, template) keep their real embedding ``x``. ``baseline`` is ``"default"``
    (the pad token, else unk, else eos: a real token's embedding, so normalisation layers see an
    input of ordinary size all along the path), ``"zero"``, ``"mean"`` (the mean token embedding, from an
    evenly spaced sample of the vocabulary), ``"pad"``/``"unk"``/``"eos"``/``"bos"``/``"mask"``, any
    single-token string, or a tensor ``(d_model,)`` / ``(pos, d_model)``.
    """
    d = x.shape[-1]
    if isinstance(baseline, Tensor):
        b = baseline.to(x.device, x.dtype)
        if b.shape not in ((d,), (prep.n, d), (1, prep.n, d)):
            raise InputError(f"a baseline tensor must be (d_model,) or (pos, d_model) = ({prep.n}, {d}); "
                             f"got {tuple(b.shape)}")
        base, label = b.expand(1, prep.n, d), "tensor"
    elif baseline == "zero":
        base, label = torch.zeros_like(x), "zero"
    elif baseline == "mean":
        with torch.no_grad():
            vocab = model.adapter.d_vocab
            ids = torch.arange(0, vocab, max(1, vocab // 8192), device=model.device)[None]  # (1, sample)
            base, label = model.adapter.embed(ids).mean(1, keepdim=True).expand(1, prep.n, d), "mean"
    elif isinstance(baseline, str) and baseline:
        tid = _token_id(model, baseline)
        if tid is None:
            raise InputError(f"{model.name} has no {baseline!r} token; use 'zero', another token or a tensor")
        with torch.no_grad():
            emb = model.adapter.embed(torch.tensor([[tid]], device=model.device))  # (1, 1, d_model)
        base, label = emb.expand(1, prep.n, d), model.tokenizer.convert_ids_to_tokens(tid)
    else:
        raise InputError(f"baseline {baseline!r} is not valid; use default, zero, mean, a token or a tensor")
    masked = prep.masked.to(x.device)[None, :, None]  # (1, pos, 1)
    return torch.where(masked, x, base).detach(), str(label)


def resolve(model: Model, prep: Prepared, x: Tensor, baseline: str | Tensor, *, erasure: bool
            ) -> tuple[Tensor, str, Tensor, str]:
    """The method's baseline and the faithfulness metrics' replacement, each with its label.

    Args:
        model: the model.
        prep: the input.
        x: ``(1, pos, d_model)`` input embeddings.
        baseline: the user's choice; ``"default"`` picks by method family.
        erasure: whether the method erases tokens in context (then its default is the mean embedding).
    """
    given = not (isinstance(baseline, str) and baseline == "default")
    chosen = baseline if given else ERASURE_BASELINE if erasure else "default"
    base, label = baseline_embeddings(model, prep, x, chosen)
    if given or chosen == ERASURE_BASELINE:
        return base, label, base, label
    return (base, label, *baseline_embeddings(model, prep, x, ERASURE_BASELINE))
