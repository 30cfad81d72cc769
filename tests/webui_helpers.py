"""Helpers for the web UI tests: a small registered dataset and a UI server in a subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from server_helpers import free_port

SERVE = (
    "import sys; from tuneforge.webui.app import webui_command; "
    "webui_command('127.0.0.1', int(sys.argv[1]), None, sys.argv[2:])"
)


def write_dataset(folder: Path, name: str = "identity", rows: int = 16) -> Path:
    """An alpaca dataset `name` registered in `folder/dataset_info.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    data = [{"instruction": f"Who are you {i}?", "input": "", "output": f"I am Forge {i}."} for i in range(rows)]
    (folder / f"{name}.json").write_text(json.dumps(data))
    (folder / "dataset_info.json").write_text(json.dumps({name: {"file_name": f"{name}.json"}}))
    return folder


def start_server(roots: list[Path], cwd: Path, log: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Run the web UI on a free port (output to `log`); returns (process, url) once it answers."""
    port = free_port()
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(port), *map(str, roots)], cwd=cwd, stdout=handle, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"web UI exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"web UI did not answer in {timeout}s: {log.read_text()[-3000:]}")


@contextmanager
def running_webui(roots: list[Path], cwd: Path, log: Path) -> Iterator[str]:
    """`start_server`, yielding the url; on exit the UI gets SIGINT (killed if it has not ended in 20 s)."""
    process, url = start_server(roots, cwd, log)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


# --- browser helpers (Playwright page objects; no import of playwright here) ---

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "webui"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def shot(page, name: str) -> None:
    """A full-page screenshot to test-artifacts/webui/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def fill(page, elem_id: str, value: str, enter: bool = False) -> None:
    """Type `value` into the text box of the component `elem_id` (Enter or blur to commit it)."""
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(value)
    if enter:
        box.press("Enter")
    else:
        box.blur()


def wait_text(page, elem_id: str, pattern: str, timeout: float = 60) -> None:
    """Wait until the element's text matches the regular expression `pattern` (screenshot on timeout)."""
    script = "([id, p]) => new RegExp(p).test((document.querySelector('#' + id) || {innerText: ''}).innerText)"
    _wait(page, script, elem_id, pattern, timeout)


def wait_value(page, elem_id: str, value: str, timeout: float = 30) -> None:
    """Wait until the text box of the component `elem_id` holds exactly `value` (screenshot on timeout)."""
    script = "([id, v]) => (document.querySelector('#' + id + ' input') || {value: ''}).value === v"
    _wait(page, script, elem_id, value, timeout)


def _wait(page, script: str, elem_id: str, arg: str, timeout: float) -> None:
    try:
        page.wait_for_function(script, arg=[elem_id, arg], timeout=timeout * 1000)
    except Exception:
        shot(page, f"failed_{elem_id}")
        raise


def choose(page, elem_id: str, option: str) -> None:
    """Pick `option` in the dropdown `elem_id` from its list (not as a typed custom value)."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).first.click()
    box.blur()


def dropdown_options(page, elem_id: str) -> list[str]:
    """The choices the dropdown `elem_id` lists when opened (closed again afterwards)."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    page.get_by_role("option").first.wait_for(timeout=10000)
    names = [text.strip() for text in page.get_by_role("option").all_inner_texts()]
    box.press("Escape")
    box.blur()
    return names


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright; skips the test when either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
