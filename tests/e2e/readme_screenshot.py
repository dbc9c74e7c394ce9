"""Take the README's screenshot of the explorer on the real default model (not a test).

Usage: ``python tests/e2e/readme_screenshot.py [docs/img/app.png]``. Needs Chromium and Playwright as
the e2e tests do, and the default model (Gemma 3 270M, converted once into the cache).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from conftest import CHROMIUM_ARGS, chromium_path

PROMPT = "When Mary and John went to the store, John gave a drink to"


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from whyllm import load_model
    from whyllm.server import running

    with running(load_model(progress=False)) as url, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(), executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 780}, device_scale_factor=1,
        )
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
        tokens = page.locator("#gen-text .tok")
        unlikely = page.locator("#gen-text .tok.unlikely")
        (unlikely.first if unlikely.count() else tokens.nth(2)).click()
        page.wait_for_selector("#alternatives")
        page.screenshot(path=str(out))
        context.close()
    print(f"{out}: {out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/app.png"))
