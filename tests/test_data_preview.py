"""`data preview` and `data stats` logic: marked samples, JSON lines output, counts of kept and dropped rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_helpers import alpaca_rows, data_config, write_json
from tuneforge.data.preview import marked_text, preview_command, stats_command

IGNORE = -100


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))


def test_preview_prints_samples_and_writes_jsonl(qwen_tokenizer, tmp_path, capsys) -> None:
    path = write_json(tmp_path / "d.json", alpaca_rows(5))
    out = tmp_path / "samples.jsonl"
    samples = preview_command(data_config(tmp_path, dataset=str(path)), 2, str(out), tokenizer=qwen_tokenizer)
    printed = capsys.readouterr().out
    assert "template: qwen" in printed and "Question 0?" in printed and "trained" in printed
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(samples) == 2
    assert set(lines[0]) == {"input_ids", "labels", "attention_mask"}
    assert len(lines[0]["attention_mask"]) == len(lines[0]["input_ids"])


def test_marked_text_styles_trained_and_masked(qwen_tokenizer) -> None:
    ids = qwen_tokenizer.encode("Hi there", add_special_tokens=False)
    text = marked_text(qwen_tokenizer, ids, [IGNORE, *ids[1:]])
    styles = [str(span.style) for span in text.spans]
    assert styles == ["dim", "bold green"] and text.plain == "Hi there"


def test_stats_counts_dropped_rows_and_reasons(qwen_tokenizer, tmp_path, capsys) -> None:
    rows = alpaca_rows(6)
    rows[1]["output"] = ""
    rows[4]["instruction"] = 7
    path = write_json(tmp_path / "d.json", rows)
    stats = stats_command(data_config(tmp_path, dataset=str(path), neat_packing=True), tokenizer=qwen_tokenizer)
    (item,) = stats.datasets
    assert (item.rows_read, item.rows_kept, item.rows_dropped) == (6, 4, 2)
    assert stats.packing_fill is not None and stats.length_percentiles["max"] > 0
    printed = capsys.readouterr().out
    assert "row 2: empty response" in printed and "row 5" in printed


def test_warm_stats_skip_the_tokenizer_until_something_changes(tmp_path, monkeypatch, qwen_tokenizer) -> None:
    """A second `data stats` on unchanged config, tokenizer files and data reads the cache without loading the
    tokenizer; changing the data file (or any config key) goes through the tokenizer again."""
    from tuneforge.data import preview
    from tuneforge.models.tokenizer import tokenizer_dir

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    path = write_json(tmp_path / "rows.json", alpaca_rows(6))
    loads = []
    monkeypatch.setattr(preview, "_tokenizer", lambda cfg: loads.append(1) or qwen_tokenizer)
    cfg = data_config(tmp_path, dataset=str(path), model_name_or_path=str(tokenizer_dir("qwen2")))
    first = stats_command(cfg)
    second = stats_command(cfg)
    assert len(loads) == 1 and second.cache_hit and second.train_rows == first.train_rows == 6
    assert second.length_percentiles == first.length_percentiles
    write_json(path, alpaca_rows(5))
    assert stats_command(cfg).train_rows == 5 and len(loads) == 2
    model = cfg.model.model_name_or_path
    stats_command(data_config(tmp_path, dataset=str(path), model_name_or_path=model, cutoff_len=9))
    assert len(loads) == 3


def test_media_tokens_show_once_with_a_count_in_the_cli_preview(qwen_tokenizer) -> None:
    """The CLI (and web UI) preview decodes an image's 64 pad tokens as `<|image_pad|>×64`, not 64 repeats."""
    pad, start, end = (
        qwen_tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>")
    )
    ids = [start, *[pad] * 64, end, *qwen_tokenizer.encode("Who?")]
    text = marked_text(qwen_tokenizer, ids, [-100] * len(ids)).plain
    assert text == "<|vision_start|><|image_pad|>×64<|vision_end|>Who?"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("<image>" * 576 + "Hi", "<image>×576Hi"),  # LLaVA
        (
            "<start_of_image>" + "<image_soft_token>" * 256 + "<end_of_image>",
            "<start_of_image><image_soft_token>×256<end_of_image>",
        ),
        ("<IMG_CONTEXT>" * 3 + "<IMG_CONTEXT><b>", "<IMG_CONTEXT>×4<b>"),  # InternVL
        ("[IMG][IMG][IMG][IMG_BREAK]", "[IMG]×3[IMG_BREAK]"),  # Pixtral
        ("<x><x> a<<<>>>b", "<x><x> a<<<>>>b"),  # two in a row, or no token: as written
    ],
)
def test_compact_runs_for_every_models_media_token_spelling(text: str, shown: str) -> None:
    from tuneforge.data.preview import compact_runs

    assert compact_runs(text) == shown
