"""Cross-prompt packing: prompts of similar length share forward passes.

Rows are sorted by token length and cut into batches under a token budget. Each batch is left-padded
(so every row's last token sits in the last column), with an attention mask that hides the padding
and position ids that start at 0 on each row's first real token. Only the last few positions are
read out (``logits_to_keep``), so the unembedding runs on a handful of positions instead of every
position of every prompt.

``predict`` is packed here whole. ``explain`` runs each row's attribution as
:func:`whyllm.methods.attribution.run.steps`, which hands out its forward passes (the input and
baseline pair, a masking method's edited inputs such as occlusion's, the faithfulness inputs): every
row's pending batch is scored together, row after row of edited inputs in shared forward passes, and
the scores go back to each run. On a CPU the unembedding (262k tokens on Gemma 3) reads its whole
matrix per pass, so one pass of 64 rows costs little more than one of 15.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from whyllm.errors import PromptTooLongError
from whyllm.methods.engine.args import check_int
from whyllm.results.base import meta
from whyllm.results.predict import PredictResult, TargetScore

__all__ = [
    "MAX_ROWS", "TOKEN_BUDGET", "components_many", "explain_many", "lens_many", "predict_many", "score_many",
]

TOKEN_BUDGET = 2048  # padded tokens per forward pass
MAX_ROWS = 64
LOGIT_ROWS = 128  # vocabulary-sized logit rows per forward pass (1 MB each on Gemma 3)


def _prepare(model, row: dict[str, Any], options: dict[str, Any]) -> tuple[list[int], list[int], dict]:
    from whyllm.batch.engine import RunSpec, call_args

    kwargs = call_args(model, RunSpec("predict", options), row)
    check_int(kwargs.get("top_k", 10), "top_k")
    ids = model.encode(kwargs["prompt"])[0].tolist()
    target = kwargs.get("target")
    tids = model.encode_continuation(target) if target is not None else []
    if len(ids) + len(tids) > model.adapter.n_ctx:
        raise PromptTooLongError(
            f"prompt + target is {len(ids) + len(tids)} tokens but {model.name} accepts at most "
            f"{model.adapter.n_ctx}; shorten them"
        )
    return ids, tids, kwargs


def _batches(items: list[tuple[int, list[int], list[int], dict]], budget: int | None = None) -> list[list]:
    budget = TOKEN_BUDGET if budget is None else budget
    items = sorted(items, key=lambda it: (len(it[1]) + len(it[2]), it[0]))
    out, cur = [], []
    for it in items:
        width = len(it[1]) + len(it[2])
        if cur and ((len(cur) + 1) * width > budget or len(cur) >= MAX_ROWS):
            out.append(cur)
            cur = []
        cur.append(it)
    return [*out, cur] if cur else out


def _left_padded(lengths: list[int]) -> tuple[Tensor, Tensor]:
    """Attention mask and position ids ``(batch, width)`` of left-padded rows of ``lengths`` tokens."""
    width = max(lengths)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, width - n :] = 1
    return mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _padded_ids(model, seqs: list[list[int]]) -> dict[str, Tensor]:
    """Model inputs of left-padded token ``seqs``: ``input_ids``, ``attention_mask``, ``position_ids``."""
    mask, pos = _left_padded([len(s) for s in seqs])
    pad = getattr(model.tokenizer, "pad_token_id", None)
    ids = torch.full(mask.shape, 0 if pad is None else pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, mask.shape[1] - len(s) :] = torch.tensor(s)
    dev = model.device
    return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "position_ids": pos.to(dev)}


def _forward(model, seqs: list[list[int]], keep: int) -> torch.Tensor:
    """Log-probs ``(batch, keep, vocab)`` at the last ``keep`` positions of left-padded ``seqs``."""
    with torch.no_grad():
        out = model.hf(**_padded_ids(model, seqs), logits_to_keep=keep)
    return out.logits[:, -keep:].float().log_softmax(-1).cpu()


def _result(model, prompt: str, ids: list[int], tids: list[int], lp: torch.Tensor, kwargs: dict):
    """``lp``: ``(max(len(tids), 1), vocab)`` log-probs after the prompt and after each target token."""
    from whyllm.methods.predict import rank_of, top_candidates

    logprobs = lp[0]
    score = None
    target = kwargs.get("target")
    if target is not None:
        per = tuple(float(lp[j, t]) for j, t in enumerate(tids))
        ranks = tuple(rank_of(lp[j], t) for j, t in enumerate(tids))
        score = TargetScore(target, tuple(tids), tuple(model.token_texts(tids)), per, ranks)
    top_k = kwargs.get("top_k", 10)
    return PredictResult(
        prompt=prompt,
        input_ids=tuple(ids),
        input_tokens=tuple(model.token_texts(ids)),
        top=top_candidates(model, logprobs, top_k),
        entropy=float(torch.special.entr(logprobs.exp()).sum()),
        target=score,
        logprobs=None,
        meta=meta(model, "predict", top_k=top_k, target=target),
    )


def predict_many(model, rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Any]:
    """:func:`whyllm.predict` over ``rows`` in packed forward passes.

    Returns:
        One entry per row, in order: a :class:`PredictResult`, or the exception that row raised.
    """
    out: list[Any] = [None] * len(rows)
    items = []
    for i, row in enumerate(rows):
        try:
            ids, tids, kwargs = _prepare(model, row, options)
        except Exception as e:  # a bad row becomes an error row
            out[i] = e
            continue
        items.append((i, ids, tids, kwargs))
    for batch in _batches(items):
        # a row's input is prompt + target[:-1]; its read-out is its last max(len(target), 1) positions,
        # which left padding puts in the batch's last columns
        seqs = [ids + tids[:-1] for _, ids, tids, _ in batch]
        keep = max(max(len(t), 1) for _, _, t, _ in batch)
        try:
            lp = _forward(model, seqs, keep)
        except Exception as e:  # noqa: BLE001 (the rows of a failed pass become error rows)
            for i, *_ in batch:
                out[i] = e
            continue
        for b, (i, ids, tids, kwargs) in enumerate(batch):
            out[i] = _result(model, kwargs["prompt"], ids, tids, lp[b, keep - max(len(tids), 1) :], kwargs)
    return out


def _embeds_forward(model, seqs: list[Tensor], keep: int) -> Tensor:
    """Logits ``(batch, keep, vocab)`` at the last ``keep`` positions of left-padded ``seqs`` ``(pos, d)``."""
    mask, pos = _left_padded([len(s) for s in seqs])
    width = mask.shape[1]
    x = seqs[0].new_zeros((len(seqs), width, seqs[0].shape[-1]))  # (batch, width, d_model)
    for i, s in enumerate(seqs):
        x[i, width - len(s) :] = s
    dev = model.device
    with torch.no_grad():
        out = model.hf(inputs_embeds=x, attention_mask=mask.to(dev), position_ids=pos.to(dev),
                       logits_to_keep=keep)
    return out.logits[:, -keep:]


def _inputs(model, scorings: list) -> list[tuple[int, int, int, Tensor]]:
    """One entry per edited input: (batch rows, scoring, input index, read offsets from the end)."""
    out = []
    for k, s in enumerate(scorings):
        n_in = 2 if s.masks is None else int(s.masks.shape[0])
        positions, _ = s.target.read_positions(s.length)
        width = s.length + s.target.appended.shape[1]
        offs = (width - 1) - positions  # (n_pos,) ascending positions, so descending offsets
        out += [(width, k, j, offs) for j in range(n_in)]
    return out


def _chunks(entries: list, rows_of) -> list[list]:
    """Entries (sorted by width) cut into forward passes under the token, row and read-out budgets."""
    out, cur, n_rows, keep = [], [], 0, 0
    for e in entries:
        r, k = rows_of(e), int(e[3].max()) + 1
        grown_rows, grown_keep = n_rows + r, max(keep, k)
        over = grown_rows * e[0] > TOKEN_BUDGET or grown_rows > MAX_ROWS
        if cur and (over or grown_rows * grown_keep > LOGIT_ROWS):
            out.append(cur)
            cur, n_rows, grown_rows, grown_keep = [], 0, r, k
        cur.append(e)
        n_rows, keep = grown_rows, grown_keep
    return [*out, cur] if cur else out


def score_many(model, scorings: list) -> list[Tensor | Exception]:
    """The scores of several :class:`~whyllm.methods.attribution.engine.Scoring` batches, packed.

    A batch that fills a forward pass on its own (rows x tokens over the budget) runs alone through
    :func:`whyllm.methods.attribution.engine.score`, sharing its prefix's key/value cache.

    Returns:
        Per scoring, ``(rows, n_groups)`` scores on the CPU, or the exception its forward pass raised.
    """
    from whyllm.methods.attribution.engine import score

    results: list[Any] = [None] * len(scorings)
    small = []
    for k, s in enumerate(scorings):
        n_in = 2 if s.masks is None else int(s.masks.shape[0])
        if n_in * s.target.rows * (s.length + s.target.appended.shape[1]) > TOKEN_BUDGET:
            try:
                results[k] = score(model, s).float().cpu()
            except Exception as e:  # noqa: BLE001 (the row becomes an error row)
                results[k] = e
        else:
            small.append(k)
            results[k] = torch.empty(n_in, s.target.n_groups)
    entries = sorted((e for e in _inputs(model, scorings) if e[1] in small), key=lambda e: e[:3])
    for chunk in _chunks(entries, lambda e: scorings[e[1]].target.rows):
        try:
            _score_chunk(model, scorings, chunk, results)
        except Exception as e:  # noqa: BLE001 (the rows of a failed pass become error rows)
            for _, k, _, _ in chunk:
                results[k] = e
    return results


@torch.no_grad()
def _score_chunk(model, scorings: list, chunk: list, results: list) -> None:
    """Score one pass of edited inputs; each fills its row of ``results[scoring]``."""
    seqs = []
    for _, k, j, _ in chunk:
        s = scorings[k]
        inp = s.inputs()[j : j + 1] if s.masks is None else torch.where(
            s.masks[j].to(s.x.device)[None, :, None], s.base, s.x)  # (1, pos, d_model)
        seqs += list(s.target.sequences(model, inp))  # rows x (pos + n_app, d_model)
    keep = max(int(e[3].max()) + 1 for e in chunk)
    logits = _embeds_forward(model, seqs, keep)  # (batch, keep, vocab)
    b = 0
    for _, k, j, offs in chunk:
        s, rows = scorings[k], scorings[k].target.rows
        if isinstance(results[k], Exception):
            b += rows
            continue
        at = keep - 1 - offs.to(logits.device)
        lp = s.target.normalise(logits[b : b + rows, at])  # (rows, n_pos, vocab)
        results[k][j] = s.target.pick(lp, s.length)[0].float().cpu()
        b += rows


def _request(model, kwargs: dict[str, Any]):
    from whyllm.methods.attribution.request import build

    known = inspect.signature(build).parameters
    options = {k: v for k, v in kwargs.items() if k not in known and k != "progress"}
    return build(model, **{k: v for k, v in kwargs.items() if k in known}, options=options)


def explain_many(model, rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Any]:
    """:func:`whyllm.explain` over ``rows``, the forward passes of every row packed together.

    Returns:
        One entry per row, in order: an :class:`~whyllm.AttributionResult`, or the exception it raised.
    """
    from whyllm.batch.engine import RunSpec, call_args
    from whyllm.methods.attribution.run import steps

    out: list[Any] = [None] * len(rows)
    runs, pending = {}, {}

    def advance(i: int, value: Any) -> None:
        try:
            if isinstance(value, Exception):
                runs[i].close()
                raise value
            pending[i] = runs[i].send(value)
        except StopIteration as stop:
            out[i] = stop.value
        except Exception as e:  # a bad row becomes an error row
            out[i] = e

    for i, row in enumerate(rows):
        try:
            runs[i] = steps(model, _request(model, call_args(model, RunSpec("explain", options), row)))
        except Exception as e:  # a bad row becomes an error row
            out[i] = e
            continue
        advance(i, None)
    while pending:
        order = sorted(pending)
        scores = score_many(model, [pending.pop(i) for i in order])
        for i, value in zip(order, scores, strict=True):
            advance(i, value)
    return out


def _packed(
    model, rows: list[dict[str, Any]], prepare: Callable[[dict], tuple[list[int], dict]],
    forward: Callable[[dict[str, Tensor]], Any], read: Callable[[Any, int, list[int], dict], Any],
    budget: int | None = None,
) -> list[Any]:
    """Rows through packed forward passes, each row read out on its own.

    ``prepare(row) -> (ids, kwargs)``, then one ``forward(inputs)`` per left-padded pass, then
    ``read(state, b, ids, kwargs)`` for the pass's row ``b``. A row that fails to prepare or read, or
    whose pass fails, gets the exception instead of a result.
    """
    out: list[Any] = [None] * len(rows)
    items = []
    for i, row in enumerate(rows):
        try:
            ids, kwargs = prepare(row)
            items.append((i, ids, [], kwargs))
        except Exception as e:  # a bad row becomes an error row
            out[i] = e
    for batch in _batches(items, budget):
        try:
            state = forward(_padded_ids(model, [ids for _, ids, _, _ in batch]))
        except Exception as e:  # noqa: BLE001 (the rows of a failed pass become error rows)
            for i, *_ in batch:
                out[i] = e
            continue
        for b, (i, ids, _, kwargs) in enumerate(batch):
            try:
                out[i] = read(state, b, ids, kwargs)
            except Exception as e:  # noqa: BLE001 (a row whose read-out fails becomes an error row)
                out[i] = e
    return out


def components_many(model, rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Any]:
    """:func:`whyllm.components` over ``rows``: the forward passes packed, each row decomposed on its own.

    Every layer's activations are recorded at every position of a pass (the heads' and MLPs' inputs),
    so its passes hold a quarter of the token budget.

    Returns:
        One entry per row, in order: a :class:`~whyllm.ComponentsResult`, or the exception it raised.
    """
    from whyllm.batch.engine import RunSpec, call_args
    from whyllm.methods.components import components_from
    from whyllm.methods.engine.direct import capture_direct

    def prepare(row: dict) -> tuple[list[int], dict]:
        kwargs = call_args(model, RunSpec("components", options), row)
        check_int(kwargs.get("top_neurons", 10), "top_neurons", minimum=0)
        return model.encode(kwargs["prompt"])[0].tolist(), kwargs

    def forward(inputs: dict[str, Tensor]) -> tuple[Any, Tensor]:
        with torch.no_grad(), capture_direct(model) as acts:
            logits = model.hf(**inputs, use_cache=False, logits_to_keep=1).logits[:, -1]  # (batch, vocab)
        return acts, logits.float()

    def read(state: tuple[Any, Tensor], b: int, ids: list[int], kwargs: dict) -> Any:
        acts, logits = state
        kwargs = dict(kwargs)
        return components_from(model, kwargs.pop("prompt"), ids, acts.at(-1, row=b), logits[b], **kwargs)

    return _packed(model, rows, prepare, forward, read, TOKEN_BUDGET // 4)


def lens_many(model, rows: list[dict[str, Any]], options: dict[str, Any]) -> list[Any]:
    """:func:`whyllm.logit_lens` over ``rows``: the forward passes packed, each row decoded on its own.

    Returns:
        One entry per row, in order: a :class:`~whyllm.LensResult`, or the exception it raised.
    """
    from whyllm.batch.engine import RunSpec, call_args
    from whyllm.methods.lens import lens_from, lens_inputs
    from whyllm.model.hooks import capture

    ad = model.adapter
    blocks = {f"L{i}": b for i, b in enumerate(ad.blocks)}

    def prepare(row: dict) -> tuple[list[int], dict]:
        kwargs = call_args(model, RunSpec("lens", options), row)
        ids, pos, tid = lens_inputs(model, **kwargs)
        return ids, {**kwargs, "pos": pos, "tid": tid}

    def forward(inputs: dict[str, Tensor]) -> list[Tensor]:
        with torch.no_grad(), capture({"embed": ad.blocks[0]}, inputs=True) as first, capture(blocks) as outs:
            model.hf(**inputs, use_cache=False, logits_to_keep=1)
        return [first["embed"], *(outs[n] for n in blocks)]  # layer x (batch, width, d_model)

    def read(states: list[Tensor], b: int, ids: list[int], kw: dict) -> Any:
        width = states[0].shape[1]
        index = torch.tensor(kw["pos"], device=states[0].device) + (width - len(ids))  # left padding
        resid = torch.stack([s[b, index] for s in states])  # (layer, pos, d_model)
        return lens_from(model, kw["prompt"], ids, kw["pos"], resid, kw["tid"], target=kw.get("target"),
                         top_k=kw.get("top_k", 5))

    return _packed(model, rows, prepare, forward, read)
