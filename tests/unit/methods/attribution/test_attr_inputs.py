import pytest
import torch

from tests.helpers.attribution import PROMPT
from whyllm.errors import InputError
from whyllm.methods.attribution.aggregate import make_units, spread, unit_scores, unit_text
from whyllm.methods.attribution.baselines import baseline_embeddings
from whyllm.methods.attribution.inputs import extend, prepare, prepare_ids

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>\n{{ m['content'] }}\n</{{ m['role'] }}>\n"
    "{% endfor %}{% if add_generation_prompt %}<assistant>\n{% endif %}"
)


def test_offsets_spans_and_bos_masked(llama):
    p = prepare(llama, PROMPT)
    assert p.tokens[0] == "<bos>" and p.spans[0] is None and bool(p.masked[0])
    assert not bool(p.masked[1:].any())
    assert "".join(p.text[a:b] for a, b in p.spans[1:]) == PROMPT


def test_pieces_fallback_matches_offsets(llama):
    p = prepare(llama, PROMPT)
    q = prepare_ids(llama, p.ids[0].tolist())
    assert q.text == PROMPT and q.spans == p.spans and torch.equal(q.masked, p.masked)


@pytest.mark.parametrize(("granularity", "expected"), [
    ("word", ["Hello", " world", ".", " Next", " one", "!"]),
    ("sentence", ["Hello world.", " Next one!"]),
])
def test_words_and_sentences(llama, granularity, expected):
    p = prepare(llama, "Hello world. Next one!")
    units = make_units(p, granularity)
    assert [unit_text(p, u).strip() for u in units] == [e.strip() for e in expected]
    covered = [i for u in units for i in range(u.start, u.end)]
    assert covered == list(range(1, p.n))  # every non-special token in exactly one unit, in order


def test_unit_scores_add_up_and_spread(llama):
    p = prepare(llama, PROMPT)
    units = make_units(p, "word")
    scores = torch.randn(p.n) * (~p.masked)
    per_unit = unit_scores(scores, units)
    assert float(per_unit.sum()) == pytest.approx(float(scores.sum()), abs=1e-5)
    assert float(spread(per_unit, units, p.n).sum()) == pytest.approx(float(scores.sum()), abs=1e-5)


def test_chat_turns_and_template_masked(tiny):
    from whyllm.model.tiny import tiny_model

    model = tiny_model("llama")
    model.tokenizer.chat_template = CHAT_TEMPLATE
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Paris?"}]
    p = prepare(model, msgs)
    units = make_units(p, "turn")
    assert [(u.role, unit_text(p, u)) for u in units] == [("system", "Be brief."),
                                                           ("user", "Where is Paris?")]
    template = [t for t, r in zip(p.tokens, p.roles, strict=True) if r is None]
    assert any("<" in t for t in template)
    assert all(bool(p.masked[i]) for i, r in enumerate(p.roles) if r is None)
    words = make_units(p, "word")
    assert {u.role for u in words} == {"system", "user"}


def test_turn_granularity_needs_a_chat(llama):
    with pytest.raises(InputError, match="chat"):
        make_units(prepare(llama, PROMPT), "turn")
    with pytest.raises(InputError, match="granularity"):
        make_units(prepare(llama, PROMPT), "paragraph")


def test_extend_adds_output_tokens(llama):
    p = prepare(llama, PROMPT)
    out = llama.encode_continuation(" Mary and")
    q = extend(llama, p, out)
    assert q.n == p.n + len(out) and q.n_prompt == p.n and q.roles[-1] == "output"
    assert q.text == PROMPT + " Mary and"


def test_baselines(setup):
    model, prep, x, _, _ = setup
    zero, label = baseline_embeddings(model, prep, x, "zero")
    assert label == "zero" and torch.equal(zero[0, 0], x[0, 0]) and float(zero[0, 1:].abs().sum()) == 0
    # the tiny models' pad row is all zero (padding_idx): the default must skip it
    assert float(model.adapter.embed.weight.detach()[model.tokenizer.pad_token_id].abs().sum()) == 0
    default, label = baseline_embeddings(model, prep, x, "default")
    assert label == "<unk>" and float(default[0, 1].norm()) > 0 and torch.equal(default[0, 0], x[0, 0])
    token, label = baseline_embeddings(model, prep, x, " the")
    assert label != "zero" and torch.equal(token[0, 1], token[0, 2])
    vec = torch.ones(x.shape[-1])
    tensor, label = baseline_embeddings(model, prep, x, vec)
    assert label == "tensor" and torch.equal(tensor[0, 3], vec)


@pytest.mark.parametrize("bad", [" Mary and John", torch.ones(3), "", 5])
def test_bad_baselines(setup, bad):
    model, prep, x, _, _ = setup
    with pytest.raises(InputError):
        baseline_embeddings(model, prep, x, bad)
