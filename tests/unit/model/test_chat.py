"""Chat prompts: the tokenizer's template when there is one, a plain transcript and a notice otherwise."""

from __future__ import annotations

import copy

import pytest

from whyllm.errors import InputError
from whyllm.methods.generate import chat_reply
from whyllm.model.base import Model
from whyllm.model.chat import chat_prompt, reply_text
from whyllm.model.hooks import n_hooks
from whyllm.results.generate import GenerationResult

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]


@pytest.fixture
def templated(tiny) -> Model:
    """The tiny llama with a copy of its tokenizer that carries a chat template."""
    base = tiny("llama")
    tok = copy.deepcopy(base.tokenizer)
    tok.chat_template = TEMPLATE
    return Model(hf=base.hf, tokenizer=tok, name="tiny-chat")


def test_template_is_used(templated):
    assert templated.has_chat_template
    prompt = chat_prompt(templated, MESSAGES)
    assert prompt == "<bos><|system|>Be brief.<|end|><|user|>Hello!<|end|><|assistant|>"
    ids = templated.encode(prompt)[0].tolist()
    assert ids.count(templated.tokenizer.bos_token_id) == 1  # the template's BOS is not doubled


def test_reply_with_template(templated):
    res = chat_reply(templated, MESSAGES, max_new_tokens=5, seed=0)
    assert isinstance(res, GenerationResult)
    assert res.prompt.endswith("<|assistant|>") and len(res.steps) <= 5
    assert n_hooks(templated.hf) == 0


def test_base_model_gets_a_plain_transcript_and_a_notice(tiny):
    model = tiny("llama")
    assert not model.has_chat_template
    with pytest.warns(UserWarning, match="no chat template"):
        prompt = chat_prompt(model, MESSAGES)
    assert prompt == "System: Be brief.\nUser: Hello!\nAssistant:"


def test_base_model_reply_stops_at_the_next_turn(tiny):
    model = tiny("llama")
    with pytest.warns(UserWarning):
        res = chat_reply(model, [{"role": "user", "content": "Tell me a story."}], max_new_tokens=6, seed=4)
    assert res.prompt.endswith("Assistant:") and res.stop_reason in ("length", "eos", "stop")


def test_reply_text_cuts_the_next_turn(tiny):
    model = tiny("llama")
    fake = GenerationResult(prompt="User: hi\nAssistant:", prompt_ids=(1,), text=" Hi there.\nUser: more",
                            steps=(), stop_reason="stop", settings={}, meta={"model": model.name})
    assert reply_text(fake) == "Hi there."


@pytest.mark.parametrize("messages", [
    [], [{"role": "wizard", "content": "hi"}], [{"role": "user"}], [{"role": "user", "content": 3}],
    [{"role": "system", "content": "only a system message"}], [{"role": "user", "content": "   "}], ["hello"],
])
def test_bad_conversations(templated, messages):
    with pytest.raises(InputError):
        chat_prompt(templated, messages)
