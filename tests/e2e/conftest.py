"""End-to-end fixtures: the real app on a tiny model, driven by headless Chromium through Playwright.

Uses Debian's ``chromium`` (``apt-get install chromium``; ``make test`` installs it) through
``executable_path``: ``playwright install`` downloads browsers and is not available offline. Tests skip,
saying why, only when Chromium or the ``playwright`` package is missing, and fail instead when
``WHYLLM_REQUIRE_E2E`` is set (CI sets it). Screenshots go to ``artifacts/screenshots/`` (ignored by git).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's Chromium, if installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _missing(reason: str) -> None:
    if os.environ.get("WHYLLM_REQUIRE_E2E"):
        pytest.fail(f"{reason}, and WHYLLM_REQUIRE_E2E is set")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """A persistent Chromium context with a fresh profile (one per test session)."""
    exe = chromium_path()
    if exe is None:
        _missing("Chromium is not installed (Debian: apt-get install chromium); `make test` installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=exe, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900}, timeout=60_000,
        )
        context.set_default_timeout(30_000)
        yield context
        context.close()


@pytest.fixture(scope="session")
def live_url(tmp_path_factory):
    """URL (with the token) of the explorer serving a tiny Llama on 127.0.0.1, with a tiny training run."""
    from whyllm.model.tiny import tiny_model
    from whyllm.server import running
    from whyllm.training.train import train

    run = tmp_path_factory.mktemp("runs") / "induction"
    train("induction", out=run, preset="attn-only-2l", steps=6, checkpoint_every=3, batch_size=4,
          n_examples=32)
    db = tmp_path_factory.mktemp("feedback") / "feedback.sqlite"
    with running(tiny_model("llama"), runs=[run], feedback_db=db) as url:
        yield url


@pytest.fixture
def page(browser, live_url):
    """A fresh tab on the explorer. The test fails if the page throws, shows a dialog (an XSS that ran)
    or asks for anything outside the server."""
    origin = live_url.split("/?", 1)[0]
    errors: list[str] = []
    outside: list[str] = []
    tab = browser.new_page()
    tab.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    tab.on("dialog", lambda d: (errors.append(f"dialog opened: {d.message}"), d.dismiss()))

    def gate(route):
        url = route.request.url
        if url.startswith(origin) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    tab.route("**/*", gate)
    tab.goto(live_url)
    tab.wait_for_selector("body[data-ready]")
    yield tab
    tab.close()
    assert not errors, errors
    assert not outside, f"the page asked for other hosts: {outside}"


@pytest.fixture
def shot():
    """``shot(page, name)`` saves a full-page screenshot to artifacts/screenshots/NAME.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(tab, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take


AXE_VERSION = "4.14.1"
AXE_DIR = Path(__file__).resolve().parents[2] / "artifacts" / "npm"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def axe_source() -> str:
    """The axe-core accessibility checker's source (npm package ``axe-core``, installed on first use into
    ``artifacts/npm``, which git ignores; ``make test`` does the same), for injecting into pages."""
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            _missing("npm is not installed, so axe-core cannot be installed (npm install axe-core)")
        import subprocess

        AXE_DIR.mkdir(parents=True, exist_ok=True)
        args = [npm, "install", "--prefix", str(AXE_DIR), "--no-save", "--no-audit", "--no-fund",
                f"axe-core@{AXE_VERSION}"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not AXE_JS.exists():
            _missing(f"npm install axe-core@{AXE_VERSION} failed: {done.stderr[-400:]}")
    return AXE_JS.read_text(encoding="utf-8")
