"""The web UI in a real browser (slow), beyond training: the Data tab turns a CSV into a registered dataset
(and shows a readable error for a broken file), and the language switch relabels the page and is remembered
across a reload. Screenshots go to test-artifacts/webui/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from webui_helpers import (
    choose,
    chromium_browser,
    dropdown_options,
    fill,
    running_webui,
    shot,
    wait_text,
    write_dataset,
)

pytestmark = pytest.mark.slow
ZH = json.loads((Path(__file__).resolve().parents[1] / "src/tuneforge/webui/locales/zh.json").read_text("utf-8"))
EN = json.loads((Path(__file__).resolve().parents[1] / "src/tuneforge/webui/locales/en.json").read_text("utf-8"))
CSV_ROWS = [
    ("What colour is the sky?", "Blue, on a clear day.", "Weather talk"),
    ("How many legs has a spider?", "Eight.", "Biology quiz"),
    ("Name a prime number.", "Seven.", "Maths quiz"),
]


@pytest.fixture
def browser():
    with chromium_browser() as launched:
        yield launched


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's first root: `data/` holds the pre-registered `identity` dataset."""
    folder = tmp_path_factory.mktemp("webui_extra")
    write_dataset(folder / "data")
    return folder


@pytest.fixture(scope="module")
def server(root: Path, tiny_qwen2: Path):
    """One UI server for the module (each test gets a fresh browser, so no stored language leaks)."""
    with running_webui([root, tiny_qwen2.parent], root, root / "server.log") as url:
        yield url


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#tf-model")
    return page


def _write_csv(path: Path) -> Path:
    lines = ["question,answer,context", *(f'"{q}","{a}","{c}"' for q, a, c in CSV_ROWS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _upload(page, path: Path) -> None:
    page.locator("#tf-data-upload input[type=file]").set_input_files(str(path))
    wait_text(page, "tf-data-upload", path.name, 30)


def test_data_tab_registers_mapped_csv(browser, server: str, tiny_qwen2: Path, root: Path, tmp_path: Path) -> None:
    (tmp_path / "uploads").mkdir()
    csv = _write_csv(tmp_path / "uploads" / "qa.csv")
    page = _open(browser, server)
    page.get_by_role("tab", name=EN["tab.data"]).click()
    _upload(page, csv)
    page.click("#tf-btn-read")
    wait_text(page, "tf-data-status", r"Read 3 rows, 3 columns", 30)
    wait_text(page, "tf-data-table", "How many legs has a spider", 10)
    choose(page, "tf-map-prompt", "question")
    choose(page, "tf-map-query", "context")
    choose(page, "tf-map-response", "answer")
    for elem, column in (("prompt", "question"), ("query", "context"), ("response", "answer")):
        assert page.locator(f"#tf-map-{elem} input").first.input_value() == column
    fill(page, "tf-data-name", "qa_ctx")
    page.click("#tf-btn-register")
    wait_text(page, "tf-data-status", r"Registered qa_ctx in .*dataset_info\.json", 30)
    shot(page, "data_registered")

    registry = json.loads((root / "data" / "dataset_info.json").read_text("utf-8"))
    assert set(registry) == {"identity", "qa_ctx"}
    assert registry["identity"] == {"file_name": "identity.json"}
    columns = {"prompt": "question", "query": "context", "response": "answer"}
    assert registry["qa_ctx"] == {"file_name": "qa_ctx.json", "columns": columns}
    records = json.loads((root / "data" / "qa_ctx.json").read_text("utf-8"))
    assert [(r["question"], r["answer"], r["context"]) for r in records] == CSV_ROWS

    page.get_by_role("tab", name=EN["tab.train"]).click()
    assert {"identity", "qa_ctx"} <= set(dropdown_options(page, "tf-dataset"))
    fill(page, "tf-model", str(tiny_qwen2), enter=True)
    choose(page, "tf-dataset", "qa_ctx")
    page.get_by_text(EN["group.preview_data"]).click()
    page.get_by_role("button", name=EN["btn.preview_data"]).click()
    wait_text(page, "tf-train-status", "Preview of qa_ctx", 60)
    # the mapped row as the model sees it: instruction, then input (context), then the trained answer
    wait_text(page, "tf-token-preview", r"What colour is the sky\?\s*Weather talk[\s\S]*Blue, on a clear day\.", 10)
    shot(page, "data_preview_mapped")


def test_data_tab_shows_error_for_broken_json(browser, server: str, root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "hi", "output": ', encoding="utf-8")
    page = _open(browser, server)
    page.get_by_role("tab", name=EN["tab.data"]).click()
    _upload(page, broken)
    page.click("#tf-btn-read")
    wait_text(page, "tf-data-status", r"Error:.*broken\.json could not be read as JSON", 30)
    fill(page, "tf-data-name", "broken")
    page.click("#tf-btn-register")
    wait_text(page, "tf-data-status", r"Error:.*broken\.json", 30)
    shot(page, "data_error")
    assert "broken" not in json.loads((root / "data" / "dataset_info.json").read_text("utf-8"))
    page.get_by_role("tab", name=EN["tab.train"]).click()  # the page still works after the error
    assert page.locator("#tf-btn-start").is_visible()


def test_data_tab_shows_a_media_datasets_thumbnails(browser, server: str, root: Path) -> None:
    """The images of a multimodal table show as thumbnails the page really loads (served from the temp folder)."""
    from PIL import Image

    folder = root / "colours"
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for colour in ("red", "blue"):
        Image.new("RGB", (64, 64), colour).save(folder / "img" / f"{colour}.png")
        chat = [{"role": "user", "content": "<image>Colour?"}, {"role": "assistant", "content": colour}]
        rows.append({"messages": chat, "images": [f"img/{colour}.png"]})
    (folder / "colours.json").write_text(json.dumps(rows), encoding="utf-8")
    page = _open(browser, server)
    page.get_by_role("tab", name=EN["tab.data"]).click()
    fill(page, "tf-data-path", str(folder / "colours.json"))
    page.click("#tf-btn-read")
    wait_text(page, "tf-data-media", r"row 1 · images: blue\.png", 30)
    script = "() => [...document.querySelectorAll('#tf-data-gallery img')].filter(i => i.naturalWidth > 0).length"
    page.wait_for_function(f"({script})() >= 2", timeout=15000)
    assert page.locator("#tf-map-images input").first.input_value() == "images"
    shot(page, "data_media_thumbnails")


def _labels_in(page, lang: dict[str, str]) -> None:
    for key in ("tab.train", "tab.data", "tab.export"):
        page.get_by_role("tab", name=lang[key], exact=True).wait_for(timeout=15000)
    page.get_by_role("button", name=lang["btn.start"], exact=True).wait_for(timeout=15000)
    page.get_by_text(lang["field.dataset"], exact=True).first.wait_for(timeout=15000)


def test_language_switch_is_remembered(browser, server: str) -> None:
    page = _open(browser, server)
    _labels_in(page, EN)
    choose(page, "tf-lang", "zh")
    _labels_in(page, ZH)
    page.get_by_role("tab", name=ZH["tab.data"], exact=True).click()
    page.get_by_text(ZH["data.name"], exact=True).first.wait_for(timeout=15000)
    assert page.get_by_role("tab", name=EN["tab.train"], exact=True).count() == 0
    shot(page, "zh_data_tab")

    page.reload()
    page.wait_for_selector("#tf-model")
    _labels_in(page, ZH)
    page.wait_for_function("() => document.querySelector('#tf-lang input').value === 'zh'", timeout=15000)
    shot(page, "zh_after_reload")

    choose(page, "tf-lang", "en")
    _labels_in(page, EN)
    assert page.get_by_role("tab", name=ZH["tab.train"], exact=True).count() == 0


def test_load_model_right_after_typing_its_path(browser, tiny_qwen2: Path, tmp_path: Path) -> None:
    """Typing a model path starts a tokenizer load; pressing Load model at once used to race it inside a fresh
    server's transformers import ("cannot import name 'AutoModelForCausalLM'", 4 times in 5)."""
    with running_webui([tmp_path, tiny_qwen2.parent], tmp_path, tmp_path / "server.log") as url:
        page = _open(browser, url)
        fill(page, "tf-model", str(tiny_qwen2), enter=True)
        page.get_by_role("tab", name=EN["tab.chat"]).click()
        page.click("#tf-btn-load-model")
        wait_text(page, "tf-chat-status", "loaded|rror", 120)
        # Gradio's progress line ("processing | 4.5s") can still sit above the message for a moment.
        status = page.locator("#tf-chat-status").inner_text()
        assert re.search(r"(?m)^Model \S+ loaded\.", status) and "rror" not in status, shot(page, "load_race")
