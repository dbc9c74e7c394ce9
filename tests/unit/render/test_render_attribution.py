
import pytest
import torch

from tests.helpers.render import plain_text as _text
from whyllm.render.attribution import heat_style, pieces
from whyllm.render.html import fragment
from whyllm.results.attribution import AttributionResult, EvaluationResult, Faithfulness, Unit


def _result(**over):
    base = dict(
        prompt="<b>Mary</b> & John", method="integrated_gradients", granularity="word", target=" <Mary>",
        target_ids=(7,), foil=" John", foil_ids=(8,), target_kind="contrast", score=1.25,
        input_ids=(1, 5, 6, 9), input_tokens=("<bos>", "<b>Mary</b>", " &", " John"),
        token_scores=torch.tensor([0.0, 2.0, -1.0, 0.5]),
        units=(Unit("<b>Mary</b>", 2.0, 1, 2), Unit(" &", -1.0, 2, 3), Unit(" John", 0.5, 3, 4)),
        faithfulness=Faithfulness((0.5,), (1.0,), (0.25,), (0.0, 1.0), (1.25, 0.0), 1.25, 0.0),
        steps=32, completeness_error=0.004,
    )
    return AttributionResult(**{**base, **over})




def test_terminal_view():
    text = _text(_result())
    assert "why ' <Mary>' rather than ' John'?" in text
    assert "<bos><b>Mary</b> & John" in text.replace("\n", "")
    lines = [line for line in text.splitlines() if "│" in line]
    assert "<b>Mary</b>" in lines[0] and "2.0000" in lines[0]  # ranked first
    assert "32 steps, completeness error 0.40%" in text and "comprehensiveness 1.000" in text


def test_heat_colours_are_relative_and_signed():
    assert [round(rel, 2) for _, rel, _ in pieces(_result()) if rel is not None] == [1.0, -0.5, 0.25]
    assert heat_style(1.0).endswith("rgb(255,0,0)") and heat_style(-1.0).endswith("rgb(0,0,255)")
    assert heat_style(0.0).endswith("rgb(255,255,255)")


def test_html_escapes_everything():
    html = fragment(_result())
    assert "<b>Mary</b>" not in html and "&lt;b&gt;Mary&lt;/b&gt;" in html
    assert "&lt;Mary&gt;" in html and "legend" in html and "rgba(220,38,38,1.000)" in html


def test_step_and_matrix_views():
    step = {"step": 3, "token": " x", "id": 7, "prob": 0.2, "sample_prob": 0.4, "cut": False,
            "temperature": 0.7, "top_k": 5, "top_p": None, "greedy": False, "kept": 5,
            "runner_up": {"token": " y", "id": 8, "prob": 0.1, "sample_prob": 0.2, "cut": False},
            "candidates": [], "cut_candidates": [{"token": "<z>", "id": 9, "prob": 0.01, "sample_prob": 0.0,
                                                  "cut": True}]}
    r = _result(step=step, matrix=torch.eye(4)[:2], matrix_tokens=(" a", " b"))
    text = _text(r)
    assert "step 3: chose ' x'" in text and "runner-up ' y'" in text and "per output token" in text
    assert "&lt;z&gt;" in fragment(r)


def test_evaluation_views():
    rows = tuple({"prompt": 0, "method": m, "comprehensiveness": c, "sufficiency": 0.1, "deletion_auc": -c,
                  "seconds": 0.5} for m, c in [("occlusion", 2.0), ("attention", 1.0)])
    ranking = ({"rank": 1, "method": "occlusion", "comprehensiveness": 2.0, "sufficiency": 0.1,
                "deletion_auc": -2.0, "seconds": 0.5, "mean_rank": 1.0},
               {"rank": 2, "method": "attention", "comprehensiveness": 1.0, "sufficiency": 0.1,
                "deletion_auc": -1.0, "seconds": 0.5, "mean_rank": 2.0})
    r = EvaluationResult(prompts=("<p>",), methods=("occlusion", "attention"), rows=rows, ranking=ranking)
    text = _text(r)
    assert text.index("occlusion") < text.index("attention")
    assert "occlusion" in fragment(r)


def _negative_strongest():
    """The IOI shape of finding 2: the strongest unit is negative and its token appears twice."""
    units = (Unit(" John", 0.3, 1, 2), Unit(" to", 4.064, 2, 3), Unit(" the", -0.077, 3, 4),
             Unit(" John", -4.935, 4, 5))
    return _result(input_ids=(1, 5, 6, 9, 5), input_tokens=("<bos>", " John", " to", " the", " John"),
                   token_scores=torch.tensor([0.0, 0.3, 4.064, -0.077, -4.935]), units=units)


def test_terminal_ranks_by_magnitude_with_sign_and_position():
    text = _text(_negative_strongest())
    rows = [line for line in text.splitlines() if "│" in line and ("John" in line or "to" in line)]
    assert "-4.9350" in rows[0] and "␣John" in rows[0] and " 4 " in rows[0]  # strongest, negative, position 4
    assert "+4.0640" in rows[1]
    assert text.index("+0.3000") < text.index("-0.0770")  # |0.3| > |-0.077|
    assert "position" in text and "−4.935" in text and "+4.935" in text  # the legend's scale


def test_html_ranks_by_magnitude_with_signed_bars_and_positions():
    html = fragment(_negative_strongest())
    table = html[html.index("<th>rank</th>"):]
    first = table[table.index("<tr><td>1</td>"):table.index("<tr><td>2</td>")]
    assert "␣John" in first and "<td>4</td>" in first and "-4.9350" in first and 'class="neg"' in first
    assert "<th>position</th>" in table and "sbar" in table and "integrated gradients" in html


def test_target_free_methods_are_not_titled_as_reasons_for_the_target():
    r = _result(method="attention", steps=None, completeness_error=None)
    assert "rather than" not in _text(r) and "independent of the target" in _text(r)
    assert "rather than" not in fragment(r)


def test_completeness_warning_names_the_fix():
    r = _result(completeness_error=0.538)
    assert "53.8%" in _text(r) and "--steps auto" in _text(r).replace("\n", " ")
    assert "class='warn'" in fragment(r) and "--steps auto" in fragment(r)
    assert "warning" not in _text(_result())


def test_report_probability_colour_is_one_hue_on_a_log_scale():
    from whyllm.render.html import prob_color
    from whyllm.render.text import prob_log_rgba

    shades = [prob_log_rgba(p) for p in (1e-5, 1e-3, 0.05, 0.5, 1.0)]
    assert {s[:3] for s in shades} == {(45, 164, 78)}  # no red for a 5% runner-up
    alphas = [s[3] for s in shades]
    assert alphas == sorted(alphas) and alphas[0] == 0.05 and alphas[-1] == 0.6
    assert prob_color(0.01) == "rgba(45,164,78,0.325)"


def test_faithfulness_in_plain_words():
    from whyllm.render.attribution import plain_words

    faith = Faithfulness((0.5,), (1.0,), (0.25,), (0.0, 1 / 3, 1.0), (1.25, -0.5, 0.1), 1.25, 0.1)
    r = _result(faithfulness=faith)
    words = plain_words(r)
    assert words.startswith("removing '<b>Mary</b>' alone flips the answer")  # the top unit by score
    assert "log p(' <Mary>') - log p(' John') goes from 1.25 to -0.50" in words and "is 0.10" in words
    assert "moves the score" in plain_words(_result(foil=None, foil_ids=None, faithfulness=r.faithfulness))
    assert words.split(":")[0] in _text(r).replace("\n", " ")


def test_html_report_draws_the_deletion_curve():
    html = fragment(_result())  # a document without the random baseline: the straight reference line
    assert "<polyline points=" in html and 'stroke-dasharray="4 3"' in html and "deletion curve" in html
    assert "<polyline" not in fragment(_result(faithfulness=None))


def test_deletion_curve_against_the_random_order_baseline():
    from whyllm.render.attribution import random_words

    faith = Faithfulness((0.5,), (1.0,), (0.25,), (0.0, 0.5, 1.0), (1.25, -0.5, 0.1), 1.25, 0.1,
                         random_deletion_scores=(1.25, 0.9, 0.1), random_orders=3)
    r = _result(faithfulness=faith)
    assert faith.deletion_auc == pytest.approx(-1.1625)
    assert faith.random_deletion_auc == pytest.approx(-0.4625)
    words = random_words(r)
    assert words == ("deleting in the method's order lowers the margin faster than random order: "
                     "deletion AUC -1.16 vs -0.46 (mean of 3 random orders; lower is faster)")
    plain = _result(foil=None, foil_ids=None, faithfulness=faith)
    assert "the target's log-probability" in random_words(plain)
    assert random_words(_result()) is None  # no baseline stored
    html = fragment(r)
    assert html.count("<polyline") == 2 and 'stroke="#bc4c00"' in html and "4 3" not in html
    assert "against -0.46 for random order" in html and "random order (mean of 3)" in html
    assert "deletion AUC -1.16 vs -0.46" in _text(r).replace("\n", " ")
    flat = Faithfulness((0.5,), (1.0,), (0.25,), (0.0, 1.0), (1.25, 0.1), 1.25, 0.1,
                       random_deletion_scores=(1.25, 0.1), random_orders=3)
    assert "no faster than" in random_words(_result(faithfulness=flat))
