import json

import pytest
from typer.testing import CliRunner

from tests.helpers.render import plain_text as _text
from whyllm.cli import app
from whyllm.render.plot import save_png
from whyllm.render.training import sparkline
from whyllm.results.training import TrainResult
from whyllm.training.emerge import emerge


@pytest.fixture(scope="module")
def emerged(tiny_run):
    return emerge(tiny_run[0])


def test_sparkline():
    assert sparkline([3.0, 2.0, 1.0, 0.0], width=4) == "█▅▃▁"
    line = sparkline([float(x) for x in range(100)], width=10)
    assert len(line) == 10 and line[0] == "▁" and line[-1] == "█"
    assert sparkline([]) == ""


def test_train_views(tiny_run, tmp_path):
    _, res = tiny_run
    text = " ".join(_text(res).split())
    assert "attn-only-2l" in text and "tokens/s" in text and "Llama 3.1 405B" in text
    assert "6/6 steps" in text and "FLOPs" in text
    html = res.to_html()
    assert "<svg" in html and "in-context loss" in html and "<script" not in html
    assert TrainResult.from_dict(json.loads(res.to_json())).to_dict() == res.to_dict()
    assert len(res.to_dataframe()) == 7  # steps 0..6
    png = save_png(res, tmp_path / "train.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_emerge_views(emerged, tmp_path):
    text = _text(emerged)
    assert "in-ctx loss" in text and "induction head" in text and "one head zeroed" in text
    html = emerged.to_html()
    assert html.count("<svg") == 5 and "Phase changes" in html and "Logit lens" in html
    assert save_png(emerged, tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_train_and_emerge(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--task", "recall", "--preset", "attn-only-2l", "--steps", "4",
            "--checkpoint-every", "2", "--batch-size", "4", "--examples", "16", "--seed", "1",
            "--out", str(out), "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "train" and doc["checkpoints"] == [0, 2, 4] and doc["task"] == "recall"
    res = runner.invoke(app, ["emerge", str(out), "--json", "--png", str(tmp_path / "e.png")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [c["step"] for c in doc["checkpoints"]] == [0, 2, 4] and "phase_changes" in doc
    assert (tmp_path / "e.png").is_file()


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["emerge", str(tmp_path)])
    assert res.exit_code == 2 and "no checkpoints" in res.output
    res = runner.invoke(app, ["train", "--task", "sorting", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown task" in res.output
    (tmp_path / "empty.txt").write_text("")
    res = runner.invoke(app, ["train", "--task", "text", "--data", str(tmp_path / "empty.txt"),
                              "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "has no text" in res.output
