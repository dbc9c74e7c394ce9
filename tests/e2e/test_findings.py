"""The explorer's views are honest, labelled, drillable and accessible: one test per finding of the
new-user review (numbers in the test names), plus an axe-core scan of every tab at two widths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers.e2e import PROMPT, run_tab


def posts(page, name: str) -> list[dict]:
    """Record the JSON bodies of every POST /api/<name> the page sends from now on."""
    seen: list[dict] = []
    page.on("request", lambda r: seen.append(json.loads(r.post_data or "{}"))
            if r.method == "POST" and r.url.endswith(f"/api/{name}") else None)
    return seen


def explain_rows(page) -> list[tuple[str, str, float]]:
    """(unit, position, score) of each row of the ranked attribution table."""
    rows = []
    for tr in page.locator("#explain-table tr").all()[1:]:
        cells = tr.locator("td").all_inner_texts()
        rows.append((cells[1], cells[2], float(cells[3].replace("−", "-"))))
    return rows


def test_1_attribution_defaults_to_integrated_gradients_and_labels_target_free_methods(page):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=explain]")
    assert page.input_value("#explain-method") == "integrated_gradients"
    assert page.is_enabled("#explain-foil") and page.is_enabled("#explain-steps")
    assert "integrated gradients" in page.locator("#explain-method option:checked").inner_text()
    page.select_option("#explain-method", "attention")
    assert page.is_disabled("#explain-foil") and page.is_disabled("#explain-target")
    assert page.is_disabled("#explain-steps")
    assert "ignores the target and foil" in page.inner_text("#explain-method-note")
    sent = posts(page, "explain")
    run_tab(page, "explain", "#explain-heatmap")
    title = page.inner_text("#out-explain h3")
    assert "Where the model looks" in title and "rather than" not in title and "Why" not in title
    assert sent[-1]["foil"] is None and "steps" not in sent[-1]
    page.select_option("#explain-method", "occlusion")
    assert page.is_enabled("#explain-foil") and page.is_disabled("#explain-steps")


def test_2_units_rank_by_magnitude_with_sign_and_position(page):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=explain]")
    page.select_option("#explain-method", "occlusion")
    page.fill("#explain-target", "␣Mary")
    page.fill("#explain-foil", "␣John")
    run_tab(page, "explain", "#explain-table")
    rows = explain_rows(page)
    magnitudes = [abs(s) for _, _, s in rows]
    assert magnitudes == sorted(magnitudes, reverse=True)
    legend = page.locator("#out-explain .legend span").first.inner_text()  # "−max"
    assert abs(float(legend.replace("−", "")) - magnitudes[0]) < 1e-3  # the legend's end is the first row
    page.click("#explain-all")  # every unit, with its position: the two ' John' tell apart
    rows = explain_rows(page)
    assert len(rows) == 14 and any(s < 0 for *_, s in rows)
    johns = sorted(int(pos) for unit, pos, _ in rows if unit == "␣John")
    assert johns == [4, 10]  # after the BOS token
    assert page.locator("#explain-table th").all_inner_texts()[:4] == ["#", "unit", "position", "score"]


def test_3_errors_show_on_top_and_mark_the_old_result(page):
    page.set_viewport_size({"width": 1366, "height": 768})
    page.fill("#prompt", PROMPT)
    page.fill("#predict-top_k", "40")  # a long table, so the bottom of the page is far away
    run_tab(page, "predict", "#predict-table")
    page.fill("#prompt", "word " * 400)
    page.click("[data-run=predict]")
    page.wait_for_selector("#error:not([hidden])")
    box = page.locator("#error").bounding_box()
    scroll = page.evaluate("window.scrollY")
    assert box is not None and scroll <= box["y"] and box["y"] + box["height"] <= scroll + 768  # in view
    assert "Out of date" in page.inner_text("#out-predict .stale-note")
    assert "stale" in page.get_attribute("#out-predict", "class")
    page.fill("#prompt", PROMPT)
    page.click("[data-run=predict]")
    page.wait_for_selector("#out-predict .stale-note", state="detached")
    assert page.is_hidden("#error") and "stale" not in page.get_attribute("#out-predict", "class")


def test_5_keyboard_opens_alternatives_branches_and_moves_between_tabs(page):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=generate]")
    page.fill("#max_new_tokens", "6")
    page.fill("#seed", "3")
    run_tab(page, "generate", "#gen-text .tok")
    first = page.locator("#gen-text .tok").first
    assert first.get_attribute("role") == "button" and first.get_attribute("tabindex") == "0"
    first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#alternatives")
    page.locator("#gen-text .tok").nth(1).focus()
    page.keyboard.press(" ")
    page.wait_for_selector("#alternatives h4:has-text('Step 2')")
    page.locator("#alternatives .branch-btn").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#gen-text .tok.branch")
    page.focus("#tab-generate")  # tabs: arrows move and select (WAI-ARIA tabs pattern)
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#tab-samples", "aria-selected") == "true"
    assert page.evaluate("document.activeElement.id") == "tab-samples" and page.is_visible("#panel-samples")
    page.keyboard.press("End")
    assert page.get_attribute("#tab-tuning", "aria-selected") == "true"  # the last tab
    assert page.get_attribute("#tab-predict", "tabindex") == "-1"


def test_6_branching_keeps_the_seed_and_can_go_back(page):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=generate]")
    page.fill("#max_new_tokens", "8")
    page.fill("#seed", "7")
    sent = posts(page, "generate")
    run_tab(page, "generate", "#gen-text .tok")
    before = page.inner_text("#gen-text")
    page.locator("#gen-text .tok").nth(2).click()
    page.locator("#alternatives .branch-btn").first.click()
    page.wait_for_selector("#gen-back")
    assert sent[-1]["seed"] == 7 and sent[-1]["prefix_ids"]
    assert page.inner_text("#gen-text") != before
    page.click("#gen-back")
    page.wait_for_selector("#gen-text")
    assert page.inner_text("#gen-text") == before and page.locator("#gen-back").count() == 0


def test_7_long_prompts_say_what_the_lens_shows_and_keep_labels_in_view(page):
    page.set_viewport_size({"width": 1366, "height": 768})
    page.fill("#prompt", " ".join(["Mary and John went to the store"] * 12))  # ~84 tokens > 64
    run_tab(page, "lens", "#lens-grid")
    note = page.inner_text("#lens-cut")
    assert re.search(r"last 64 of \d+ positions", note)
    assert "null" not in page.inner_text("#out-lens")
    last_cell = page.locator("#lens-grid tr").nth(1).locator("td").last
    assert last_cell.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 255, 255)"  # opaque
    scroller = page.locator("#out-lens .lens-scroll")
    view = scroller.bounding_box()
    last = page.locator("#lens-grid tr").nth(1).locator("td").last.bounding_box()
    assert last["x"] + last["width"] <= view["x"] + view["width"] + 1  # the prediction column is in view
    scroller.evaluate("e => { e.scrollLeft = e.scrollWidth; }")
    label = page.locator("#lens-grid tr").nth(1).locator("th").bounding_box()
    assert abs(label["x"] - view["x"]) <= 2  # layer labels stay at the left edge
    page.locator("#lens-grid tr").nth(2).locator("td").nth(5).click()  # drill-down: a cell's top-k
    assert page.locator("#lens-topk tr").count() == 1 + 5


# the method also warns in Python (the server's log); here the page's own warning is what is tested
IG_WARNING = "ignore:integrated gradients' completeness error:UserWarning"


@pytest.mark.filterwarnings(IG_WARNING)
def test_8_incomplete_integrated_gradients_warns_with_the_fix(page):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=explain]")
    page.fill("#explain-steps", "1")
    run_tab(page, "explain", "#explain-heatmap")
    warning = page.inner_text("#completeness-warning")
    assert "do not add up" in warning and "%" in warning
    sent = posts(page, "explain")
    page.click("#rerun-auto")
    page.wait_for_selector("#out-explain #explain-heatmap")
    page.wait_for_selector("#status-text:has-text('explain done')")
    assert sent[-1]["steps"] == "auto" and page.input_value("#explain-steps") == "auto"


def test_9_a_target_without_its_space_gets_a_hint(page):
    page.fill("#prompt", PROMPT)
    page.fill("#predict-target", "drink")  # tiny model: 'drink' ranks 327, ' drink' ranks 4
    run_tab(page, "predict", "#predict-table")
    page.wait_for_selector("#hint-predict .hint")
    hint = page.inner_text("#hint-predict")
    assert "Did you mean ␣drink (rank 4)?" in hint and "327" in hint
    assert "id" in page.inner_text("#hint-predict .tokline")  # the target's tokens, with ids
    page.click("#hint-predict .hint button")
    page.wait_for_selector("#hint-predict .tokline:has-text('␣drink')")
    assert page.input_value("#explain-target") == "␣drink"  # one target for the whole page
    page.fill("#predict-target", "went")  # 10 vs 12: no hint
    page.click("[data-run=predict]")
    page.wait_for_selector("#hint-predict .tokline:has-text('went')")
    assert page.locator("#hint-predict .hint").count() == 0


def test_10_probability_colours_are_one_log_scale_and_red_marks_unlikely_picks(page):
    page.fill("#prompt", PROMPT)
    run_tab(page, "predict", "#predict-table")
    colours = page.locator("#predict-table .tok").evaluate_all(
        "ts => ts.map(t => getComputedStyle(t).backgroundColor)")
    hues = {re.match(r"rgba?\((\d+), (\d+), (\d+)", c).groups() for c in colours}
    assert hues == {("45", "164", "78")}  # one hue whatever the probability
    alphas = [float(c.split(",")[3].strip(" )")) for c in colours if c.count(",") == 3]
    assert alphas == sorted(alphas, reverse=True)  # likelier is stronger
    ticks = page.inner_text("#out-predict .ticks")
    assert "0.01%" in ticks and "100%" in ticks
    page.click("#tabs [data-tab=generate]")
    page.fill("#max_new_tokens", "12")
    page.fill("#seed", "1")
    run_tab(page, "generate", "#gen-text .tok")
    for t in page.locator("#gen-text .tok").all():
        p = float(t.get_attribute("title").split("p=")[1].split(" ")[0])
        assert ("unlikely" in t.get_attribute("class")) == (p < 0.1)


@pytest.mark.filterwarnings(IG_WARNING)
def test_11_faithfulness_in_words_with_the_deletion_curve(page):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=explain]")
    page.fill("#explain-target", "␣Mary")
    page.fill("#explain-foil", "␣John")
    page.fill("#explain-steps", "8")
    run_tab(page, "explain", "#faithfulness")
    words = page.inner_text("#faith-words")
    assert words.startswith("Removing") and "log p(␣Mary) − log p(␣John)" in words and "goes from" in words
    assert page.locator("#deletion-curve polyline").count() == 2  # the method's order and random order
    assert page.locator("#deletion-curve #random-curve[stroke-dasharray]").count() == 1
    label = page.get_attribute("#deletion-curve", "aria-label")
    assert "Deletion curve" in label and "for random order" in label
    assert "nats" in page.inner_text("#faithfulness")


@pytest.mark.filterwarnings(IG_WARNING)
def test_11_the_deletion_curve_is_drawn_against_a_random_order_baseline(page):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=explain]")
    page.select_option("#explain-method", "occlusion")
    page.fill("#explain-target", "␣Mary")
    page.fill("#explain-foil", "␣John")
    run_tab(page, "explain", "#faithfulness")
    words = page.inner_text("#random-words")
    m = re.search(r"lowers the margin (faster|no faster) than random order: "
                  r"deletion AUC (-?[\d.]+) vs (-?[\d.]+)", words)
    assert m and "mean of 3 random orders" in words, words
    auc, rand = float(m.group(2)), float(m.group(3))
    assert (m.group(1) == "faster") == (auc < rand)
    assert page.locator("#deletion-curve line[stroke-dasharray]").count() == 0  # replaced by the baseline
    ys = page.locator("#deletion-curve polyline").evaluate_all(
        "ps => ps.map(p => p.getAttribute('points').split(' ').map(xy => Number(xy.split(',')[1])))")
    assert len(ys[0]) == len(ys[1]) and ys[0][0] == ys[1][0] and ys[0][-1] == ys[1][-1]  # same ends
    assert "Orange dashed: in random order" in page.inner_text("#faithfulness figcaption")


def test_12_attention_has_labels_a_line_view_a_sink_toggle_and_a_table(page):
    page.fill("#prompt", PROMPT)
    run_tab(page, "attention", "#attention-heads canvas")
    page.locator("#attention-heads figure").nth(2).click()  # a thumbnail opens that head
    assert page.input_value("#attention-head") == "2"
    canvas = page.locator("#attention-heads canvas")
    assert canvas.count() == 1 and canvas.get_attribute("role") == "img"
    assert "query rows" in canvas.get_attribute("aria-label")
    assert canvas.bounding_box()["width"] > 90 + 14 * 5  # room for the token labels
    assert page.locator("#attn-table tr").count() == 1 + 15  # BOS + 14 prompt tokens
    assert page.locator("#attn-lines svg text").count() == 2 * 15
    page.check("#attention-sink")  # the first key drops out and rows rescale to their own maximum
    for q in range(1, 15):
        strongest = page.locator("#attn-table tr").nth(q + 1).locator("td").first.text_content()
        assert not strongest.startswith("0: ") and strongest.endswith("1.00"), strongest
    assert "row max" in page.inner_text("#out-attention .legend")


def test_12_the_line_view_works_by_keyboard_and_hover_and_follows_the_sink_toggle(page):
    page.fill("#prompt", " ".join(["Mary and John went to the store"] * 10))  # a long prompt: ~71 tokens
    run_tab(page, "attention", "#attention-heads canvas")
    assert "for its line view" in page.inner_text("#attn-lines-hint")  # all heads: choose one
    page.select_option("#attention-head", "1")
    assert page.locator("#attn-lines-hint").count() == 0
    view = page.locator("#attn-lines svg")
    n = page.locator("#attn-table tr").count() - 1
    assert n > 60 and view.locator("text").count() == 2 * n
    assert "Line view of L0.H1" in view.get_attribute("aria-label") and view.get_attribute("role") == "group"
    lines = view.locator("line")
    assert n < lines.count() <= 12 * n  # the 12 strongest keys per query: long prompts stay light
    opacity = [float(x) for x in lines.evaluate_all("ls => ls.map(l => l.getAttribute('stroke-opacity'))")]
    assert min(opacity) >= 0.005 and max(opacity) <= 1  # opacity = weight
    focusable = view.locator("text[tabindex='0']")
    assert focusable.count() == 1  # one tab stop for the whole view (roving focus)
    focusable.focus()
    last = n - 1
    assert page.evaluate("document.activeElement.getAttribute('aria-label')").startswith(f"query {last}:")
    detail = page.inner_text("#attn-line-detail")
    assert detail.startswith(f"Query {last} (") and "attends most to" in detail
    on = view.locator("line.on")
    assert on.count() >= 1 and all(q == str(last) for q in on.evaluate_all("ls => ls.map(l => l.dataset.q)"))
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')").startswith(f"query {last - 1}:")
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")  # to the keys' column: key 0 (the first token) and its queries
    assert page.evaluate("document.activeElement.getAttribute('aria-label')").startswith("key 0:")
    assert "is attended most by" in page.inner_text("#attn-line-detail")
    assert set(view.locator("line.on").evaluate_all("ls => ls.map(l => l.dataset.k)")) == {"0"}
    page.keyboard.press("Escape")
    assert view.locator("line.on").count() == 0 and "focusing" not in (view.get_attribute("class") or "")
    sink = view.locator("line[data-k='0']").count()
    page.check("#attention-sink")  # the first-token sink drops out of the line view too
    view = page.locator("#attn-lines svg")
    assert sink > 0 and view.locator("line[data-k='0']").count() == 0
    view.locator("text[data-col=q]").nth(5).hover()  # hover: the same highlighting as focus
    assert set(view.locator("line.on").evaluate_all("ls => ls.map(l => l.dataset.q)")) == {"5"}
    assert page.locator("#attn-table").count() == 1  # the table alternative stays
    view.locator("text[data-col=q]").nth(7).focus()
    page.keyboard.press("Enter")  # a token is a button: it explains that query's score (QK attribution)
    # the page's CSP forbids eval, so wait on a locator rather than wait_for_function
    page.locator("#qk-headline", has_text="(pos 7)").wait_for()
    assert page.locator("#qk-query").input_value() == "7" and page.locator("#qk-key").input_value() != ""


def test_13_one_target_for_the_page_reports_of_the_result_on_screen_and_drill_down(page):
    page.fill("#prompt", PROMPT)
    page.fill("#predict-target", "␣Mary")
    for other in ("#explain-target", "#lens-target", "#components-target", "#patch-target"):
        assert page.input_value(other) == "␣Mary"
    page.click("#tabs [data-tab=components]")
    page.fill("#components-foil", "␣John")
    assert page.input_value("#explain-foil") == "␣John"
    sent = posts(page, "predict")
    run_tab(page, "predict", "#predict-table")
    count = len([b for b in sent if b.get("top_k") != 1])  # hints send small top_k=1 requests
    with page.expect_download() as download:
        page.click("[data-report=predict]")
    report = Path(download.value.path()).read_text(encoding="utf-8")
    assert "Next token after" in report
    assert len([b for b in sent if b.get("top_k") != 1]) == count  # no second run
    page.locator("#predict-table .explain-btn").first.click()  # "explain this" opens attribution
    page.wait_for_selector("#out-explain #explain-heatmap")
    assert page.get_attribute("#tab-explain", "aria-selected") == "true"
    run_tab(page, "components", "#components-grid")
    page.locator("#components-grid tr").nth(2).locator("td").nth(1).click()  # L1.H1 opens its pattern
    page.wait_for_selector("#out-attention #attn-lines")
    assert page.input_value("#attention-layer") == "1" and page.input_value("#attention-head") == "1"


TABS = [("predict", "#predict-table"), ("generate", "#gen-text .tok"), ("samples", "#tree"),
        ("explain", "#faithfulness"), ("lens", "#lens-grid"), ("components", "#components-grid"),
        ("attention", "#attention-heads canvas"), ("patch", "#patch-grid"), ("circuit", "#circuit-graph"),
        ("training", "#training-table")]


@pytest.mark.filterwarnings(IG_WARNING)
@pytest.mark.parametrize("width", [1366, 800])
def test_14_every_tab_passes_axe_without_serious_violations(page, axe_source, width):
    page.set_viewport_size({"width": width, "height": 800})
    page.evaluate(axe_source)
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=generate]")
    page.fill("#max_new_tokens", "6")
    page.click("#tabs [data-tab=patch]")
    page.fill("#patch-target", "␣Mary")
    page.fill("#patch-foil", "␣John")
    page.click("#tabs [data-tab=explain]")
    page.fill("#explain-steps", "4")
    found = {}
    for tab, ready in TABS:
        run_tab(page, tab, ready)
        if tab == "generate":
            page.locator("#gen-text .tok").first.click()
        if tab == "attention":
            page.select_option("#attention-head", "1")
        result = page.evaluate("""async () => {
            const r = await axe.run(document, { resultTypes: ["violations"] });
            return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
              .map(v => ({ id: v.id, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")) }));
        }""")
        if result:
            found[tab] = result
    assert not found, found
