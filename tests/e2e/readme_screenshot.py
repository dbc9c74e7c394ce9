"""Take the docs' screenshots of the explorer on the real default model (not a test).

Usage: ``python tests/e2e/readme_screenshot.py [docs/img]``. Writes ``app.png`` (the README's: a sampled
continuation with the alternatives at one step) and ``tab-<name>.png`` for every tab. Needs Chromium and
Playwright as the e2e tests do, and the default model (Gemma 3 270M, converted once into the cache).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from conftest import CHROMIUM_ARGS, chromium_path

PROMPT = "When Mary and John went to the store, John gave a drink to"

# tab, element to wait for, what to do before the run, what to do after it
TABS = [
    ("predict", "#predict-table", lambda p: p.fill("#predict-target", "Mary"),
     lambda p: p.wait_for_selector("#hint-predict .hint")),
    ("explain", "#faithfulness",
     lambda p: (p.fill("#explain-target", "␣Mary"), p.fill("#explain-foil", "␣John")), None),
    ("lens", "#lens-grid", lambda p: p.fill("#lens-target", "␣Mary"),
     lambda p: p.locator("#lens-grid tr").nth(8).locator("td").last.click()),
    ("components", "#components-grid", None, None),
    ("attention", "#attention-heads canvas", lambda p: p.select_option("#attention-layer", "5"),
     lambda p: (p.locator("#attention-heads figure").first.click(), p.check("#attention-sink"),
                p.locator("#attn-lines svg text[tabindex='0']").focus())),
    ("patch", "#patch-grid", None, None),
    ("circuit", "#circuit-graph",
     lambda p: p.fill("#circuit-corrupted", "When Mary and John went to the store, Mary gave a drink to"),
     lambda p: p.locator("#circuit-graph .node[data-node*='.H']").last.click()),
    ("samples", "#tree", lambda p: (p.fill("#max_new_tokens", "8"), p.fill("#seed", "1")), None),
]


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from whyllm import load_model
    from whyllm.server import running

    out.mkdir(parents=True, exist_ok=True)
    with running(load_model(progress=False)) as url, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(), executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 800}, device_scale_factor=1,
        )
        context.set_default_timeout(300_000)
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-ready]")
        page.fill("#prompt", PROMPT)
        page.click("#tabs [data-tab=generate]")
        page.fill("#max_new_tokens", "24")
        page.fill("#temperature", "1")
        page.fill("#seed", "4")
        page.click("[data-run=generate]")
        page.wait_for_selector("#gen-text .tok")
        page.wait_for_selector("[data-run=generate]:enabled")  # the stream is over
        tokens = page.locator("#gen-text .tok")
        unlikely = page.locator("#gen-text .tok.unlikely")
        (unlikely.first if unlikely.count() else tokens.nth(2)).click()
        page.wait_for_selector("#alternatives")
        page.screenshot(path=str(out / "app.png"))
        page.screenshot(path=str(out / "tab-generate.png"))
        for tab, ready, before, after in TABS:
            page.click(f"#tabs [data-tab={tab}]")
            if before:
                before(page)
            page.click(f"[data-run={tab}]")
            page.wait_for_selector(f"#out-{tab} {ready}")
            page.wait_for_selector(f"[data-run={tab}]:enabled")
            if after:
                after(page)
            page.locator(f"#panel-{tab}").scroll_into_view_if_needed()
            page.screenshot(path=str(out / f"tab-{tab}.png"))
            print(f"{tab}: {(out / f'tab-{tab}.png').stat().st_size / 1024:.0f} KB", flush=True)
        context.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
