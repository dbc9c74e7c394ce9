"""The QK attribution panel: clicking a head explains why it attends where it does (POST /api/qk)."""

from __future__ import annotations

import json

from tests.helpers.e2e import PROMPT, run_tab


def test_clicking_a_head_opens_its_qk_attribution_and_the_keyboard_can_change_it(page, shot, axe_source):
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(json.loads(r.post_data or "{}"))
            if r.method == "POST" and r.url.endswith("/api/qk") else None)
    page.fill("#prompt", PROMPT)
    run_tab(page, "components", "#components-grid")
    page.locator("#components-grid tr").nth(2).locator("td").nth(1).click()  # L1.H1
    page.wait_for_selector("#qk-panel #qk-grid")
    assert page.get_attribute("#tab-attention", "aria-selected") == "true"
    assert sent[-1]["layer"] == 1 and sent[-1]["head"] == 1 and sent[-1]["query"] == 14  # the last token
    strongest = page.locator("#attn-table tr").last.locator("td").first.text_content()  # query 14's top key
    assert strongest.startswith(f"{sent[-1]['key']}: ")
    headline = page.inner_text("#qk-headline")
    assert headline.startswith("The score of L1.H1 attending from ␣to (pos 14) to ")
    cells = page.locator("#qk-pairs tr td:nth-child(4)").all_inner_texts()
    values = [float(t.replace("−", "-")) for t in cells]
    assert len(values) == 12 and [abs(v) for v in values] == sorted((abs(v) for v in values), reverse=True)
    assert "query sources at" in page.inner_text("#qk-grid caption")
    assert page.locator("#qk-grid th[scope=row]").count() >= 3
    page.locator("#qk-panel").scroll_into_view_if_needed()
    shot(page, "qk-panel")
    page.evaluate(axe_source)
    serious = page.evaluate("""async () => {
        const r = await axe.run("#qk-panel", { resultTypes: ["violations"] });
        return r.violations.filter(v => v.impact === "serious" || v.impact === "critical").map(v => v.id);
    }""")
    assert not serious, serious
    page.focus("#qk-query")  # keyboard only: pick another query and key, then run
    page.select_option("#qk-query", "5")
    assert page.locator("#qk-key option").count() == 6  # keys 0..5: a query cannot attend later
    page.select_option("#qk-key", "2")
    page.focus("#qk-run")
    page.keyboard.press("Enter")
    page.wait_for_selector("#qk-headline:has-text('(pos 5) to ␣Mary (pos 2)')")
    assert sent[-1] == {"prompt": PROMPT, "layer": 1, "head": 1, "query": 5, "key": 2}
    page.check("#attention-sink")  # redrawing keeps the result without asking the server again
    assert "(pos 5) to ␣Mary (pos 2)" in page.inner_text("#qk-headline") and len(sent) == 2
