"""Real-browser walk through the main pages: Debian's chromium driven by Playwright.

The app is started with the README's entry point on a free local port, with its default
models, and every step saves a screenshot under artifacts/screenshots/ for a person to look
at. Outside CI the test is skipped when chromium is not installed; in CI it must run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from core import paths

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium for the browser test: apt-get install chromium")
    pytest.skip("chromium is not installed", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    env = dict(os.environ)
    env["ALIGNMENT_LAB_HOME"] = str(tmp_path_factory.mktemp("browser-home"))
    env["ALIGNMENT_LAB_CACHE"] = str(paths.converted_dir())  # reuse the SmolLM2 conversion
    env.pop("ALIGNMENT_LAB_MODELS", None)
    log = open(tmp_path_factory.mktemp("log") / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError(f"Streamlit did not start on {url}; see {log.name}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 2400})
        tab.set_default_timeout(240_000)
        tab.outside_requests = []  # every URL the pages requested from another host
        tab.on("request", lambda request: _note_outside(tab, request.url))
        yield tab
        browser.close()


def _note_outside(tab, url: str) -> None:
    host = urlparse(url).hostname
    if url.startswith(("http:", "https:", "ws:", "wss:")) and host not in ("127.0.0.1",
                                                                          "localhost"):
        tab.outside_requests.append(url)


def _wait_charts(tab, count: int) -> None:
    """Wait until `count` Vega-Lite charts have drawn, so screenshots show them."""
    tab.wait_for_function(
        "n => document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks')"
        ".length >= n", arg=count)


def _wait_idle(tab) -> None:
    """Wait until Streamlit has finished running the script."""
    tab.wait_for_timeout(500)
    tab.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=300_000)


def _shot(tab, name: str) -> None:
    # Streamlit scrolls inside its main container, so a tall viewport captures the page.
    tab.screenshot(path=SHOTS / name)


def _no_exception(tab) -> None:
    assert tab.locator("[data-testid='stException']").count() == 0


def test_home(page, server):
    page.goto(server)
    page.get_by_role("heading", name="Alignment Lab").wait_for()
    page.get_by_text("Models available").wait_for()
    _wait_idle(page)
    _no_exception(page)
    _shot(page, "01-home.png")


def test_compare_generates(page, server):
    page.goto(f"{server}/compare")
    page.get_by_role("heading", name="Compare models").wait_for()
    _wait_idle(page)
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Sample 1:").first.wait_for()
    _wait_idle(page)
    _no_exception(page)
    assert page.get_by_text("mean log-prob per token").count() >= 2
    _shot(page, "02-compare.png")


def test_probabilities_framing(page, server):
    page.goto(f"{server}/probabilities")
    page.get_by_role("heading", name="Next-token probabilities").wait_for()
    page.get_by_text("How the framing shifts the answer").wait_for()
    _wait_idle(page)
    _no_exception(page)
    page.get_by_text("Logit lens: where in the model").scroll_into_view_if_needed()
    _shot(page, "03-probabilities.png")


def _choose(tab, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    box = tab.locator("[data-testid='stSelectbox']").filter(has_text=label).first
    box.click()
    tab.get_by_role("option", name=option).first.click()
    _wait_idle(tab)


def test_collapse_page(page, server):
    page.goto(f"{server}/collapse")
    page.get_by_role("heading", name="Collapse and diversity").wait_for()
    page.get_by_text("How spread out are the hidden states?").wait_for()
    _wait_idle(page)
    _no_exception(page)
    assert page.get_by_text("Gaussian null").count() >= 1
    _wait_charts(page, 3)  # layer curve, spectrum, map
    _shot(page, "04-collapse.png")


def test_bias_page_probe(page, server):
    page.goto(f"{server}/bias")
    page.get_by_role("heading", name="Bias").first.wait_for()
    _wait_idle(page)
    page.get_by_role("tab", name="Word probe").click()
    page.get_by_role("button", name="Score the words").click()
    _wait_idle(page)
    _no_exception(page)
    _shot(page, "05-bias-probe.png")


def test_pretrain_micro_job(page, server):
    page.goto(f"{server}/pretrain")
    page.get_by_role("heading", name="Pretrain a tiny GPT").wait_for()
    _wait_idle(page)
    _choose(page, "Model size", "micro")
    steps = page.get_by_label("Steps")
    steps.fill("40")
    steps.press("Enter")
    _wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    # the heading, not the intro text, which mentions the same words
    page.get_by_role("heading", name="3. The model mirrors its corpus").wait_for(timeout=300_000)
    _wait_idle(page)
    _no_exception(page)
    _shot(page, "06-pretrain.png")


def test_align_tiny_dpo_job(page, server):
    page.goto(f"{server}/align")
    page.get_by_role("heading", name="Align a model").wait_for()
    _wait_idle(page)
    page.get_by_text("DPO", exact=True).first.click()
    _wait_idle(page)
    _choose(page, "Preset", "Arithmetic truth, DPO + NLL (tiny-gpt)")
    page.get_by_role("button", name="Start", exact=True).click()
    page.get_by_role("heading", name="Before and after, on the dataset's prompts").wait_for(
        timeout=300_000)
    _wait_idle(page)
    _no_exception(page)
    _shot(page, "07-align.png")


def test_preferences_page(page, server):
    page.goto(f"{server}/preferences")
    page.get_by_role("heading", name="Class preferences").wait_for()
    _wait_idle(page)
    _no_exception(page)
    _shot(page, "08-preferences.png")


def test_no_request_leaves_machine(page):
    # Runs last: a public demo or an offline classroom must not depend on, or report
    # visits to, any other host.
    assert page.outside_requests == []
