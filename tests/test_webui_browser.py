"""The web UI in a real browser (slow): train a tiny model from the form, watch it, close and reopen the page
while it trains, stop it, chat with the result and export it. Screenshots go to test-artifacts/webui/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webui_helpers import chromium_browser, running_webui, write_dataset
from webui_helpers import fill as _fill
from webui_helpers import shot as _shot
from webui_helpers import wait_text as _wait_text

pytestmark = pytest.mark.slow


@pytest.fixture
def browser():
    with chromium_browser() as launched:
        yield launched


@pytest.fixture
def server(tmp_path: Path, tiny_qwen2: Path):
    write_dataset(tmp_path / "data")
    with running_webui([tmp_path, tiny_qwen2.parent], tmp_path, tmp_path / "server.log") as url:
        yield url


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _fill_train_form(page, model: Path) -> None:
    _fill(page, "tf-model", str(model), enter=True)
    _fill(page, "tf-dataset", "identity", enter=True)
    page.get_by_text("More training settings").click()
    values = {
        "tf-max_steps": "400",
        "tf-logging_steps": "1",
        "tf-save_steps": "1000",
        "tf-cutoff_len": "64",
        "tf-per_device_train_batch_size": "2",
        "tf-gradient_accumulation_steps": "1",
        "tf-learning_rate": "0.001",
    }
    for elem, value in values.items():
        _fill(page, elem, value)


def test_train_watch_reopen_stop_chat_export(browser, server: str, tiny_qwen2: Path, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    page.wait_for_selector("#tf-model")
    _fill_train_form(page, tiny_qwen2)
    page.click("#tf-btn-preview")
    _wait_text(page, "tf-train-status", "valid", 60)
    page.click("#tf-btn-start")
    _wait_text(page, "tf-train-status", "started", 30)
    status = page.locator("#tf-train-status").inner_text()
    out = Path(re.search(r"writing (\S+?)\.? It keeps", status).group(1))
    _wait_text(page, "tf-progress", r"step [1-9]\d*/400", 180)
    page.wait_for_selector("#tf-loss-plot canvas, #tf-loss-plot svg", timeout=30000)
    _shot(page, "train_running")
    page.close()  # the job must survive the page

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    _wait_text(page, "tf-train-status", "Re-attached", 30)
    _wait_text(page, "tf-progress", "running", 30)
    _shot(page, "train_reattached")
    page.click("#tf-btn-stop")
    _wait_text(page, "tf-progress", r"stopped", 120)
    _shot(page, "train_stopped")
    assert (out / "adapter_model.safetensors").is_file()
    assert list(out.glob("checkpoint-*")), "the stop saved no checkpoint"

    _fill(page, "tf-adapters", str(out), enter=True)
    _tab(page, "Chat")
    page.click("#tf-btn-load-model")
    _wait_text(page, "tf-chat-status", "loaded", 120)
    _fill(page, "tf-chat-input", "Who are you 3?", enter=True)
    _wait_text(page, "tf-chatbot", "Who are you 3", 120)  # shown with the first streamed answer chunk
    _shot(page, "chat")

    _tab(page, "Export")
    _fill(page, "tf-export-dir", "exports/tiny")
    page.click("#tf-btn-export")
    _wait_text(page, "tf-export-status", "Exported", 240)
    _shot(page, "export")
    assert (tmp_path / "exports" / "tiny" / "config.json").is_file()
    for name in ("Data", "Evaluate & Predict"):
        _tab(page, name)
        _shot(page, name.split()[0].lower())
