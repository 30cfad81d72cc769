"""Text from data, templates and models is printed literally on every path (issue: rich markup crashes).

Property tests feed strings full of markup-like brackets, backslashes, emoji codes, control and non-BMP
characters through each printing path and check nothing raises and the text appears as `shown(text)`.
"""

from __future__ import annotations

import html
import io
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneforge.console import line, literal, make_console, markdown_literal, shown
from tuneforge.data.pipeline import DatasetStat, DataStats
from tuneforge.data.preview import show_header, show_sample, show_stats

PIECES = ["[", "]", "[/x]", "[bold]", "[/]", "[/INST]", "[INST]", "\\", "\\[", ":smile:", "<s>", "&amp;", "*", "_"]
CONTROLS = ["\x00", "\x07", "\x08", "\x1b[31m", "\r", "\x0b", "\x7f", "\x9b", "\t", "\n"]
HOSTILE = st.lists(
    st.one_of(
        st.sampled_from(PIECES + CONTROLS),
        st.text(max_size=4),
        st.characters(min_codepoint=0x10000, max_codepoint=0x1FFFF),
    ),
    max_size=12,
).map("".join)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _console() -> tuple[object, io.StringIO]:
    out = io.StringIO()
    return make_console(file=out, width=100_000, force_terminal=False, color_system=None), out


def _squeeze(text: str) -> str:
    """Runs of spaces and tabs as one space (rich expands tabs to the next tab stop, a layout choice)."""
    return re.sub(r"[ \t]+", " ", text).strip()


def _appears(text: str, output: str) -> bool:
    """Every line of `shown(text)` is inside some printed line, up to the width of whitespace runs."""
    printed = [_squeeze(row) for row in output.split("\n")]
    wanted = [_squeeze(part) for part in shown(text).split("\n") if part.strip()]
    return all(any(part in row for row in printed) for part in wanted)


class _EchoTokenizer:
    """Decodes every id to a fixed string, so a sample's text is whatever the test chose."""

    def __init__(self, text: str) -> None:
        self.text = text

    def decode(self, ids: list[int], **_: object) -> str:
        return self.text


@given(HOSTILE)
def test_shown_escapes_only_control_characters(text: str) -> None:
    out = shown(text)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", out)
    assert re.sub(r"\\x[0-9a-f]{2}", "", out).replace("\\", "") == re.sub(
        "[\x00-\x08\x0b-\x1f\x7f-\x9f]", "", text
    ).replace("\\", "")


@FAST
@given(HOSTILE)
def test_warning_and_header_print_literally(text: str) -> None:
    console, out = _console()
    show_header(console, DataStats(kind="sft", template=text, warnings=[text, f"template: {text!r} vs [/INST]"]))
    assert _appears(text, out.getvalue())
    assert "[/INST]" in out.getvalue()


@FAST
@given(HOSTILE)
def test_sample_preview_prints_literally(text: str) -> None:
    console, out = _console()
    sample = {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}
    show_sample(console, _EchoTokenizer(text), sample, "sft")
    assert _appears(text, out.getvalue())


@FAST
@given(HOSTILE)
def test_stats_with_drop_reasons_print_literally(text: str) -> None:
    console, out = _console()
    stats = DataStats(
        kind="sft",
        template="llama2",
        datasets=[DatasetStat(name=text, rows_read=3, rows_kept=1, rows_dropped=2)],
        drop_reasons={f"row 2: {text}": 2},
        problems=[text],
        warnings=[text],
    )
    show_stats(console, stats)
    assert _appears(text, out.getvalue())


@FAST
@given(HOSTILE)
def test_chat_output_prints_literally(text: str) -> None:
    from tuneforge.infer.chat_cli import ChatSession, run_chat
    from tuneforge.infer.chat_stream import ChatDelta

    class Engine:
        def stream_chat(self, history: list, system: str | None = None):
            yield ChatDelta(content=text)

    stdout = io.StringIO()
    run_chat(Engine(), ChatSession(), io.StringIO("hi\n"), stdout)
    assert shown(text) in stdout.getvalue()


@FAST
@given(HOSTILE)
def test_web_preview_html_shows_text(text: str) -> None:
    from tuneforge.webui.datasets import token_preview_html

    page = token_preview_html([{"input_ids": [1, 2], "labels": [-100, 5]}], _EchoTokenizer(text))
    body = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert _appears(text, body)


@given(HOSTILE)
def test_markdown_literal_escapes_every_markup_character(text: str) -> None:
    escaped = markdown_literal(text)
    assert re.sub(r"\\(.)", r"\1", escaped) == shown(text)
    assert not re.search(r"(?<!\\)[<\[\]*_`]", escaped.replace("\\\\", ""))


def test_line_keeps_our_style_and_user_text_apart() -> None:
    text = line(("warning", "yellow"), ": ", "[bold]x[/bold]")
    assert text.plain == "warning: [bold]x[/bold]"
    assert [span.style for span in text.spans] == ["yellow"]
    assert literal(":smile: [x]").plain == ":smile: [x]"


def test_every_template_mismatch_warning_prints(qwen_tokenizer) -> None:
    from tuneforge.data.templates import get_template, list_templates
    from tuneforge.data.templates.mismatch import check_template_tokenizer

    for name in list_templates():
        try:
            template = get_template(name, qwen_tokenizer)
        except Exception:  # templates that need a tokenizer feature the Qwen one lacks
            continue
        warnings = check_template_tokenizer(template, qwen_tokenizer, allow=True)
        console, out = _console()
        show_header(console, DataStats(kind="sft", template=name, warnings=warnings))
        for warning in warnings:
            assert _appears(warning, out.getvalue()), name


def _run_cli(*args: str):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("template", ["llama2", "mistral"])
def test_data_preview_with_bracket_template_prints_warning_and_rows(tiny_qwen2, shared_dir, template: str) -> None:
    out = _run_cli(
        "data", "preview", f"model_name_or_path={tiny_qwen2}", f"template={template}", "allow_template_mismatch=true",
        "dataset=alpaca_en_demo", f"dataset_dir={shared_dir / 'lf-data'}", "stage=sft", "-n", "1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "[/INST]" in out.stdout and "warning: template:" in out.stdout
    assert "input_ids:" in out.stdout and "sample 0" in out.stdout


def test_chat_with_mismatched_template_stops_before_reading_weights(tiny_qwen2, tmp_path) -> None:
    import shutil

    from tuneforge.config import load_config
    from tuneforge.data.templates.mismatch import TemplateMismatchError
    from tuneforge.infer import load_engine

    model = tmp_path / "model"
    shutil.copytree(tiny_qwen2, model)
    for weights in model.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")  # reading it would fail with a different error
    cfg = load_config({"model_name_or_path": str(model), "template": "mistral"})
    with pytest.raises(TemplateMismatchError, match="'mistral' needs special tokens"):
        load_engine(cfg)  # what `tuneforge chat`, `api` and `webchat` call first
