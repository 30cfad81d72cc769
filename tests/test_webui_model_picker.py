"""The web UI's model picker in a real browser (slow): it lists the model registry, and picking a model fills the
model box with its hub id and the template box with its template (`default` for a base model, as LLaMA-Factory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webui_helpers import chromium_browser, dropdown_options, fill, running_webui, shot, wait_text, wait_value

pytestmark = pytest.mark.slow


def _pick(page, name: str) -> None:
    """Type part of `name` into the model picker (the long list is filtered as one types) and click it."""
    box = page.locator("#tf-model input").first
    box.click()
    box.fill("")
    box.press_sequentially(name[:-2], delay=20)
    page.get_by_role("option", name=name, exact=True).first.click()
    box.blur()


def test_picking_a_registry_model_fills_hub_id_and_template(tmp_path: Path, tiny_qwen2: Path) -> None:
    roots = [tmp_path, tiny_qwen2.parent]
    with chromium_browser() as browser, running_webui(roots, tmp_path, tmp_path / "server.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#tf-model")
        _pick(page, "Qwen3-0.6B-Thinking")
        wait_value(page, "tf-model", "Qwen/Qwen3-0.6B")
        wait_value(page, "tf-template", "qwen3")
        wait_text(page, "tf-template-note", "Qwen3-0.6B-Thinking: Qwen/Qwen3-0.6B")
        shot(page, "model_picker")

        _pick(page, "Qwen3-0.6B-Base")
        wait_value(page, "tf-model", "Qwen/Qwen3-0.6B-Base")
        wait_value(page, "tf-template", "default")

        _pick(page, "Qwen2-VL-2B-Instruct (multimodal: images, videos)")  # a multimodal model tuneforge trains, marked
        wait_value(page, "tf-model", "Qwen/Qwen2-VL-2B-Instruct")
        wait_value(page, "tf-template", "qwen2_vl")
        wait_text(page, "tf-template-note", "multimodal: takes images")

        fill(page, "tf-model", "Llama-3.2-1B-Instruct", enter=True)  # typed, not picked
        wait_value(page, "tf-model", "meta-llama/Llama-3.2-1B-Instruct")
        wait_value(page, "tf-template", "llama3")

        fill(page, "tf-model", str(tiny_qwen2), enter=True)  # a local folder stays a path; its tokenizer decides
        wait_text(page, "tf-template-note", "templates matching this tokenizer")
        wait_value(page, "tf-model", str(tiny_qwen2))
        fill(page, "tf-template", "auto", enter=True)  # the note says what `template: auto` will pick
        wait_text(page, "tf-template-note", "auto = qwen")

        fill(page, "tf-model", "", enter=True)
        options = dropdown_options(page, "tf-model")  # the registry's first families (the list shows 100)
        assert options[:6] == [
            "Aeva-Flash-Chat",
            "Aeva-Air-Chat",
            "Aeva-Chat",
            "Aeva-Pro-Chat",
            "Aeva-Max-Chat",
            "Aya-23-8B-Chat",
        ]
