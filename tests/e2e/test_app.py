"""The explorer as a user drives it: type, click, read what the page shows."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.e2e import PROMPT, run_tab


def test_next_token_distribution(page, shot):
    assert page.title() == "whyllm explorer"
    assert "tiny-llama" in page.inner_text("#model-info")
    page.fill("#prompt", PROMPT)
    page.fill("#predict-top_k", "8")
    run_tab(page, "predict", "#predict-table")
    rows = page.locator("#predict-table tr")
    assert rows.count() == 9  # header + 8 candidates
    assert "Next token after" in page.inner_text("#out-predict")
    assert "%" in rows.nth(1).inner_text() and page.locator("#out-predict .bar").count() == 8
    assert "entropy" in page.inner_text("#out-predict").lower()
    shot(page, "predict")
    with page.expect_download() as download:  # the same result as a self-contained report
        page.click("[data-report=predict]")
    report = Path(download.value.path()).read_text(encoding="utf-8")
    assert download.value.suggested_filename == "whyllm-predict.html"
    assert report.startswith("<!doctype html>") and "Next token after" in report and "<script" not in report


def test_click_a_generated_token_to_see_its_alternatives_and_branch(page, shot):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=generate]")
    page.fill("#max_new_tokens", "10")
    page.fill("#seed", "1")
    run_tab(page, "generate", "#gen-text .tok")
    tokens = page.locator("#gen-text .tok")
    assert tokens.count() >= 1
    tokens.nth(0).click()
    page.wait_for_selector("#alternatives")
    side = page.inner_text("#alternatives")
    assert "Step 1" in side and "probability" in side.lower()
    assert page.locator("#alternatives .branch-btn").count() >= 4  # the other alternatives
    shot(page, "generate-alternatives")
    page.locator("#alternatives .branch-btn").first.click()
    page.wait_for_selector("#gen-text .tok.branch")
    assert page.locator("#gen-text .tok.branch").count() == 1
    assert page.locator("#gen-text .tok").nth(0).get_attribute("class").count("branch") == 1
    shot(page, "generate-branched")


def test_attribution_heatmap_and_faithfulness(page, shot):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=explain]")
    page.fill("#explain-target", "␣Mary")  # ␣ is typed as a space
    page.fill("#explain-foil", " John")
    page.select_option("#explain-method", "integrated_gradients")
    page.fill("#explain-steps", "8")
    run_tab(page, "explain", "#explain-heatmap")
    assert page.locator("#explain-heatmap .tok").count() >= 10
    title = page.inner_text("#out-explain h3")
    assert "␣Mary" in title and "rather than" in title and "␣John" in title
    faith = page.inner_text("#faithfulness").lower()
    for figure in ("comprehensiveness", "sufficiency", "deletion auc", "completeness error"):
        assert figure in faith
    shot(page, "attribution")


def test_logit_lens_grid(page, shot):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=lens]")
    page.fill("#lens-target", " Mary")
    run_tab(page, "lens", "#lens-grid")
    rows = page.locator("#lens-grid tr")
    assert rows.count() == 1 + 3  # header, embed, L0, L1
    assert page.locator("#lens-grid tr").nth(1).locator("th").inner_text() == "embed"
    page.select_option("#lens-colour", "target")  # recolour by the target's probability
    columns = page.locator("#lens-grid tr").nth(0).locator("th").count() - 1  # one per position
    assert columns == 15 and page.locator("#lens-grid td").count() == 3 * columns
    shot(page, "lens")


def test_internals_views_and_samples(page, shot):
    page.fill("#prompt", PROMPT)
    page.click("#tabs [data-tab=samples]")
    page.fill("#max_new_tokens", "6")
    run_tab(page, "samples", "#tree")
    assert "samples of" in page.inner_text("#out-samples")
    run_tab(page, "components", "#components-grid")
    assert page.locator("#components-bars tr").count() > 5
    run_tab(page, "attention", "#attention-heads canvas")
    assert page.locator("#attention-heads canvas").count() == 4  # every head of layer 0
    page.select_option("#attention-head", index=1)
    assert page.locator("#attention-heads canvas").count() == 1
    page.click("#tabs [data-tab=patch]")
    page.fill("#patch-target", " Mary")
    page.fill("#patch-foil", " John")
    run_tab(page, "patch", "#patch-grid")
    assert page.locator("#patch-grid tr").count() == 1 + 2  # header + one row per layer
    shot(page, "patching")
    page.select_option("#patch-method", "causal_trace")
    page.fill("#patch-subject", " Mary")
    page.click("[data-run=patch]")
    page.wait_for_selector("#out-patch h3:has-text('causal tracing')")
    assert page.locator("#patch-grid tr").count() == 1 + 2


def test_hostile_prompt_is_shown_as_text(page):
    hostile = '</script><img src=x onerror=alert(1)><b id="bold">bold</b>'
    page.fill("#prompt", hostile)
    run_tab(page, "predict", "#predict-table")
    assert hostile in page.inner_text("#out-predict h3")
    assert page.locator("#out-predict img").count() == 0 and page.locator("#bold").count() == 0


def test_errors_are_shown_and_the_app_keeps_working(page):
    page.fill("#prompt", "word " * 400)  # over the tiny model's 128-token context
    page.click("#tabs [data-tab=predict]")
    page.click("[data-run=predict]")
    page.wait_for_selector("#error:not([hidden])")
    assert "400" in page.inner_text("#error") and "accepts at most 128" in page.inner_text("#error")
    page.fill("#prompt", PROMPT)
    run_tab(page, "predict", "#predict-table")


def test_progress_is_shown_and_cancel_frees_the_server(browser, shot):
    import time

    from whyllm.model.hooks import intervene
    from whyllm.model.tiny import tiny_model
    from whyllm.server import create_app, running

    model = tiny_model("llama", seed=5)
    app = create_app(model)

    def slow(hidden):
        time.sleep(0.02)  # 100 tokens x 2 blocks: several seconds unless cancelled
        return hidden

    with intervene({b: slow for b in model.adapter.blocks}, inputs=True), running(app) as url:
        tab = browser.new_page()
        tab.goto(url)
        tab.wait_for_selector("body[data-ready]")
        tab.fill("#prompt", PROMPT)
        tab.click("#tabs [data-tab=generate]")
        tab.fill("#max_new_tokens", "100")
        tab.fill("#seed", "1")  # a draw without end-of-sequence: only the cancel can stop it early
        sent = []
        tab.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
        tab.click("[data-run=generate]")
        tab.wait_for_selector("#progress:not([hidden])")
        assert "tokens" in tab.inner_text("#status-text") and tab.is_visible("#cancel")
        shot(tab, "progress")
        tab.focus("#prompt")  # finding 4: Ctrl+Enter while a job runs sends nothing and says why
        tab.keyboard.press("Control+Enter")
        tab.wait_for_selector("#status-text:text('still working')")
        assert len(sent) == 1 and tab.is_disabled("[data-run=generate]") and tab.is_visible("#cancel")
        tab.wait_for_selector("#gen-text .tok >> nth=2")  # finding 13: tokens arrive while it runs
        tab.click("#cancel")
        tab.wait_for_selector("#status-text:text('cancelled')")
        assert tab.is_enabled("[data-run=generate]") and tab.is_hidden("#error")
        kept = tab.locator("#gen-text .tok").count()  # cancel keeps what was made
        assert 3 <= kept < 100 and f"after {kept} tokens" in tab.inner_text("#out-generate")
        assert f"kept the {kept} tokens" in tab.inner_text("#status-text")
        worker, deadline = app.state.worker, time.monotonic() + 60
        while not worker.recent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.recent[-1]["state"] == "cancelled" and worker.recent[-1]["done"] < 100
        tab.click("#tabs [data-tab=predict]")
        tab.click("[data-run=predict]")
        tab.wait_for_selector("#predict-table")
        tab.close()


def test_training_tab_follows_a_prediction_over_checkpoints(page, shot):
    page.click("#tabs [data-tab=training]")
    assert page.locator("#training-run option").count() == 1
    page.uncheck("#training-ablate")
    page.click("[data-run=training]")
    page.wait_for_selector("#training-table, #error:not([hidden])")
    assert page.is_hidden("#error"), page.inner_text("#error")
    rows = page.locator("#training-table tr")
    assert rows.count() == 1 + 3  # header + checkpoints 0, 3 and 6
    text = page.inner_text("#out-training")
    assert "in-context loss" in text and "emerged after" in text
    assert not page.is_disabled("[data-report=training]")
    shot(page, "training")


def test_feedback_on_a_generation_is_stored(page):
    page.fill("#prompt", "The capital of France is")
    page.click("#tabs [data-tab=generate]")
    page.fill("#max_new_tokens", "4")
    page.fill("#seed", "3")
    page.click("[data-run=generate]")
    page.wait_for_selector("#feedback-bar")
    page.click("#feedback-bad")
    page.wait_for_selector("#feedback-status:has-text('saved as feedback')")
    page.click("#feedback-correct")
    page.fill("#feedback-correction", " Paris.")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the Save button, reached by keyboard
    page.wait_for_selector("#feedback-status:has-text('corrected')")
    items = page.evaluate("async () => (await (await fetch('/api/feedback')).json()).items")
    assert [i["verdict"] for i in items[-2:]] == ["bad", "bad"]
    assert items[-1]["correction"] == " Paris." and items[-1]["source"] == "app"
    assert items[-1]["completion_ids"] and items[-1]["settings"]["seed"] == 3


def test_feedback_on_a_sample_is_stored(page):
    page.fill("#prompt", "The capital of France is")
    page.click("#tabs [data-tab=samples]")
    page.fill("#max_new_tokens", "3")
    page.fill("#seed", "5")
    page.click("[data-run=samples]")
    page.wait_for_selector("#feedback-bar-s2")
    page.click("#feedback-good-s2")
    page.wait_for_selector("#feedback-status-s2:has-text('saved as feedback')")
    items = page.evaluate("async () => (await (await fetch('/api/feedback')).json()).items")
    assert items[-1]["verdict"] == "good" and items[-1]["settings"]["seed"] == 6  # sample 2: seed + 1


def test_tuning_tab_says_how_to_start_it_without_an_adapter(page):
    page.click("#tabs [data-tab=tuning]")
    assert page.is_visible("#panel-tuning") and page.is_disabled("[data-run=tuning]")
    assert "whyllm serve --adapter DIR" in page.inner_text("#out-tuning")
