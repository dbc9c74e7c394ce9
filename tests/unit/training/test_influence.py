"""Training-data attribution (TracIn) on a tiny key-value recall run."""

import io
import json
import shutil

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from whyllm.errors import InputError
from whyllm.model.hooks import n_hooks
from whyllm.results.params import InfluenceResult
from whyllm.training import checkpoints, load_examples, train
from whyllm.training.influence import (
    _intervals,
    _load,
    influence,
    target_log_prob,
    tracin_reference,
    tracin_scores,
)


@pytest.fixture(scope="module")
def recall_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("influence") / "recall"
    train("recall", out=out, preset="tiny", steps=8, checkpoint_every=4, batch_size=8, n_examples=24)
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run far faster on one thread on shared cores (influence() sets it itself)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _query(run, i=0):
    """Prompt and target of training example ``i``: ``k.. v.. ... ? kXX`` -> `` vYY``."""
    text = load_examples(run)[i]["text"]
    return text.rsplit(" ", 2)[0], " " + text.split()[-2]


def test_fast_scores_equal_the_naive_per_example_loop(recall_run):
    ckpts = checkpoints(recall_run)
    paths, weights = [p for _, p in ckpts[:-1]], _intervals([s for s, _ in ckpts], 1e-3)
    examples = load_examples(recall_run)
    prompt, target = _query(recall_run)
    fast = tracin_scores(paths, weights, examples, prompt, target, batch_size=7)  # uneven last batch
    naive = tracin_reference(paths, weights, examples, prompt, target)
    assert fast.abs().max() > 0
    assert torch.allclose(fast, naive, rtol=1e-4, atol=1e-6 * float(naive.abs().max()))


def test_influence_result(recall_run):
    prompt, target = _query(recall_run, 3)
    res = influence(recall_run, prompt, target, top_k=4)
    scores = [e.score for e in res.examples]
    assert scores == sorted(scores, reverse=True) and len(res.examples) == len(res.opponents) == 4
    assert res.opponents[0].score <= res.opponents[-1].score <= res.examples[-1].score
    assert res.checkpoints == (0, 4) and res.n_examples == 24
    final = _load(checkpoints(recall_run)[-1][1])
    assert res.log_prob == pytest.approx(target_log_prob(final, prompt, target), abs=1e-5)
    assert res.target_tokens == (target.strip(),) and res.verify is None
    assert n_hooks(final.hf) == 0
    doc = json.loads(res.to_json())
    assert InfluenceResult.from_dict(doc).to_dict() == res.to_dict()
    assert set(doc["examples"][0]) == {"index", "text", "score"}
    assert len(res.to_dataframe()) == 8
    console = Console(file=io.StringIO(), width=100)
    console.print(res)
    assert "raised it most" in console.file.getvalue() and "not verified" in console.file.getvalue()
    assert "Raised it most" in res.to_html()


def test_verify_retrains_without_top_and_random_examples(recall_run):
    prompt, target = _query(recall_run)
    res = influence(recall_run, prompt, target, top_k=3, verify=True, k=2, seeds=(0, 1))
    v = res.verify
    assert v["k"] == 2 and v["seeds"] == [0, 1] and len(v["random_drops"]) == 2
    assert v["random_drop"] == pytest.approx(sum(v["random_drops"]) / 2)
    assert v["separated"] == all(v["top_k_drop"] > d for d in v["random_drops"])
    assert v["baseline"] == pytest.approx(res.log_prob) and res.seconds["verify"] > 0


def test_bad_run_directories(recall_run, tmp_path):
    prompt, target = _query(recall_run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no checkpoints"):
        influence(tmp_path / "empty", prompt, target)
    with pytest.raises(InputError, match="does not exist"):
        influence(tmp_path / "missing", prompt, target)
    one = tmp_path / "one"
    shutil.copytree(recall_run, one, ignore=shutil.ignore_patterns("checkpoint-4", "checkpoint-8"))
    with pytest.raises(InputError, match="at least two"):
        influence(one, prompt, target)


def test_a_tokenizer_that_does_not_match(recall_run, tmp_path):
    from whyllm.model.tiny import tiny_tokenizer

    other = tmp_path / "other"
    shutil.copytree(recall_run, other)
    for _, path in checkpoints(other):
        for f in path.glob("tokenizer*"):
            f.unlink()
        tiny_tokenizer().save_pretrained(path)
    with pytest.raises(InputError, match="does not match the run's examples"):
        influence(other, "k01 v02 ? k01", " v02")


def test_cli(recall_run, tmp_path):
    from whyllm.cli import app

    prompt, target = _query(recall_run)
    runner = CliRunner()
    res = runner.invoke(app, ["influence", "--run", str(recall_run), "--prompt", prompt, "--target", target,
                              "-k", "2", "--json", "--png", str(tmp_path / "i.png")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["kind"] == "influence" and len(doc["examples"]) == 2 and doc["verify"] is None
    assert (tmp_path / "i.png").read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["influence", "--run", str(tmp_path), "--prompt", prompt, "--target", target])
    assert bad.exit_code == 2 and "no checkpoints" in bad.output


def test_multi_token_target_scores_every_token(recall_run):
    prompt, target = _query(recall_run)
    res = influence(recall_run, prompt, target + " <eos>", top_k=2)
    assert len(res.target_ids) == 2 and res.target_tokens[1] == "<eos>"
    final = _load(checkpoints(recall_run)[-1][1])
    first = target_log_prob(final, prompt, target)
    assert res.log_prob < first  # log p(value, <eos>) = log p(value) + log p(<eos> | value)
    assert res.log_prob == pytest.approx(first + target_log_prob(final, prompt + target, " <eos>"), abs=1e-4)
