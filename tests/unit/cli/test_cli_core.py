"""The CLI's predict, generate and chat commands on a tiny model, and their user errors (exit code 2)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from whyllm.cli import app
from whyllm.model import load as load_mod

PROMPT = "The capital of France is"
runner = CliRunner()


@pytest.fixture
def tiny_cli(tiny, monkeypatch):
    """Make every CLI load return the tiny llama (records the options it was asked for)."""
    asked = []

    def fake_load(name=None, **kw):
        asked.append((name, kw))
        return tiny("llama")

    monkeypatch.setattr(load_mod, "load_model", fake_load)
    return asked


def _run(*args, input=None, code=0):
    """Invoke the CLI; the exit code must be ``code`` (0 by default, 2 for user errors)."""
    res = runner.invoke(app, list(args), input=input)
    assert res.exit_code == code, (res.exit_code, res.output)
    return res


def _user_error(result, *needles):
    """Exit code 2, one line on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr  # progress lines may come first
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# ---- normal use ---------------------------------------------------------------------------------------
def test_predict(tiny_cli):
    res = _run("predict", PROMPT, "--target", " Paris", "--top-k", "3")
    assert res.exit_code == 0, res.output
    assert "entropy" in res.stdout and "target ␣Paris" in res.stdout and "rank" in res.stdout


def test_predict_json(tiny_cli):
    res = _run("predict", PROMPT, "--target", " Paris", "--json", "-k", "4")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "predict" and doc["schema_version"] == 1 and doc["model"] == "tiny-llama"
    assert doc["prompt"] == PROMPT and len(doc["top"]) == 4
    assert set(doc["top"][0]) == {"token", "id", "prob", "logprob", "rank"}
    assert doc["target"]["text"] == " Paris" and isinstance(doc["entropy"], float)


def test_options_reach_the_loader(tiny_cli):
    _run("predict", PROMPT, "--model", "some/folder", "--dtype", "bfloat16", "--allow-pickle", "--json")
    name, kw = tiny_cli[-1]
    assert name == "some/folder" and kw["dtype"] == "bfloat16" and kw["allow_pickle"] is True
    assert kw["trust_remote_code"] is False


def test_generate_streams_and_marks(tiny_cli):
    res = _run("generate", PROMPT, "-n", "4", "--seed", "0", "--temperature", "1.5")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(PROMPT)
    assert "alternatives" in res.stdout and "stopped: length" in res.stdout and "seed=0" in res.stdout
    assert "unlikely" in res.stdout  # a random tiny model picks improbable tokens


def test_generate_json_is_reproducible(tiny_cli):
    args = ("generate", PROMPT, "-n", "5", "--seed", "3", "--top-p", "0.9", "--json")
    a, b = _run(*args), _run(*args)
    assert a.exit_code == 0, a.output
    doc = json.loads(a.stdout)
    assert doc == json.loads(b.stdout)
    assert doc["kind"] == "generate" and len(doc["steps"]) == 5 and isinstance(doc["text"], str)
    assert set(doc["steps"][0]) >= {"token", "id", "prob", "rank", "alternatives"}
    assert doc["settings"]["top_p"] == 0.9


def test_generate_greedy(tiny_cli):
    doc = json.loads(_run("generate", PROMPT, "-n", "3", "--greedy", "--json").stdout)
    assert all(s["rank"] == 1 for s in doc["steps"])


def test_samples(tiny_cli):
    res = _run("generate", PROMPT, "-n", "4", "--samples", "3", "--seed", "1", "--temperature", "2")
    assert res.exit_code == 0, res.output
    assert "3 samples" in res.stdout and "branch point" in res.stdout
    doc = json.loads(_run("generate", PROMPT, "-n", "4", "--samples", "3", "--seed", "1", "--json").stdout)
    assert doc["kind"] == "samples" and len(doc["samples"]) == 3 and "children" in doc["tree"]


def test_html_report(tiny_cli, tmp_path):
    out = tmp_path / "report.html"
    res = _run("predict", PROMPT, "--html", str(out))
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    out2 = tmp_path / "gen.html"
    assert _run("generate", PROMPT, "-n", "2", "--json", "--html", str(out2)).exit_code == 0
    assert "Generation" in out2.read_text(encoding="utf-8")


def test_chat_base_model(tiny_cli):
    res = _run("chat", "-n", "4", "--seed", "0", "--show-probs", input="Hello there\nTell me more\n\n")
    assert res.exit_code == 0, res.output
    assert "no chat template" in res.stderr and "notice" in res.stderr
    assert res.stdout.count("model> ") == 2
    assert "alternatives" in res.stdout  # --show-probs


def test_chat_quits_on_eof(tiny_cli):
    res = _run("chat", "-n", "2", input="")
    assert res.exit_code == 0, res.output
    assert "model> " not in res.stdout


# ---- user errors: one line, exit code 2 --------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (("predict", ""), "empty"),
    (("predict", "   "), "empty"),
    (("generate", ""), "empty"),
    (("predict", "one two " * 200), "accepts at most 128"),
    (("generate", "one two " * 200), "accepts at most 128"),
    (("generate", PROMPT, "--temperature", "-1"), "temperature must be 0 (greedy) or a number from"),
    (("generate", PROMPT, "--top-p", "0"), "top_p must be in (0, 1]"),
    (("generate", PROMPT, "--top-p", "1.5"), "top_p must be in (0, 1]"),
    (("generate", PROMPT, "--top-k", "0"), "top_k must be an integer >= 1"),
    (("generate", PROMPT, "-n", "0"), "max_new_tokens"),
    (("generate", PROMPT, "--samples", "0"), "--samples"),
    (("predict", PROMPT, "--top-k", "0"), "--top-k"),
    (("predict", PROMPT, "--target", "<unk>"), "does not tokenize"),
    (("predict", PROMPT, "--target", ""), "target is empty"),
    (("chat", "--temperature", "-2"), "temperature"),
])
def test_user_errors(tiny_cli, args, needle):
    _user_error(_run(*args, code=2), needle)


def test_bad_options_fail_before_loading(tiny_cli):
    _user_error(_run("generate", PROMPT, "--top-p", "2", code=2), "top_p")
    _user_error(_run("predict", "", code=2), "empty")
    assert tiny_cli == []


def test_missing_model_folder(tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    _user_error(_run("predict", PROMPT, "--model", str(missing), code=2), "does not exist", str(missing))


def test_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _user_error(_run("predict", PROMPT, "--model", "nobody/nothing", code=2), "hf download")


def test_corrupt_weights(tiny, tmp_path):
    folder = tmp_path / "m"
    model = tiny("llama")
    model.hf.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(os.urandom(1000))
    res = _run("predict", PROMPT, "--model", str(folder), code=2)
    _user_error(res, "model.safetensors", "not a readable")


def test_corrupt_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("WHYLLM_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(500))
    _user_error(_run("generate", PROMPT, "--model", str(bad), code=2), "GGUF", str(bad))


def test_pickle_needs_flag(tiny, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "p"
    model = tiny("llama")
    model.hf.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    _user_error(_run("predict", PROMPT, "--model", str(folder), code=2), "--allow-pickle")
    res = _run("predict", PROMPT, "--model", str(folder), "--allow-pickle", "--json")
    assert res.exit_code == 0, res.output
    shutil.rmtree(folder)


def test_help_lists_core_commands():
    res = _run("--help")
    assert res.exit_code == 0
    for name in ("predict", "generate", "chat"):
        assert name in res.stdout
