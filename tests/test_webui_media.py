"""Media in the web UI without a browser: chat uploads reach the engine as `media=` (a fake engine records what it
got), refusals for models that cannot take them, the Multimodal form group, the model picker's multimodal
entries, and dataset previews with image thumbnails and media file names."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tuneforge.data.templates import get_spec
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.webui import forms
from tuneforge.webui.webchat import engine_request, respond

gr = pytest.importorskip("gradio")


class _MediaEngine:
    """Streams a fixed answer and records the messages and media of every call."""

    def __init__(self, template: str = "qwen2_vl", model_name: str = "tiny-vl") -> None:
        from tuneforge.infer.params import SamplingParams

        self.model_name, self.defaults = model_name, SamplingParams()
        self.template = SimpleNamespace(spec=get_spec(template))
        self.calls: list[dict] = []

    def stream_chat(self, messages, system=None, **overrides):
        from tuneforge.infer.chat_stream import ChatDelta

        self.calls.append({"messages": [dict(m) for m in messages], "system": system, **overrides})
        yield ChatDelta(content="red", finish_reason="stop")


def _image(folder: Path, name: str = "square.png") -> str:
    from PIL import Image

    path = folder / name
    Image.new("RGB", (32, 32), (255, 0, 0)).save(path)
    return str(path)


# --- chat uploads --------------------------------------------------------------------------------------------


def test_an_uploaded_image_reaches_the_engine_as_media_with_its_mark(tmp_path: Path) -> None:
    engine, image = _MediaEngine(), _image(tmp_path)
    history = list(respond(engine, {"text": "What colour?", "files": [image]}, [], "", 0.1, 0.9, 8))[-1]
    call = engine.calls[-1]
    assert call["media"] == {"images": [image]}
    assert call["messages"] == [{"role": "user", "content": "<image>What colour?"}]
    assert history[0] == {"role": "user", "content": [{"path": image}, "What colour?"]}  # shown in the history
    assert history[-1] == {"role": "assistant", "content": "red"}
    # the next turn (history as Gradio sends it back: normalized parts) keeps the first image in its message
    normalized = [
        {"role": "user", "content": [{"type": "file", "file": {"path": image}}, {"type": "text", "text": "What?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
    ]
    second = _image(tmp_path, "second.png")
    list(respond(engine, {"text": "And this one?", "files": [second]}, normalized))
    call = engine.calls[-1]
    assert call["media"] == {"images": [image, second]}
    assert [m["content"] for m in call["messages"]] == ["<image>What?", "red", "<image>And this one?"]


def test_text_without_uploads_sends_no_media_and_typed_marks_count() -> None:
    engine = _MediaEngine()
    list(respond(engine, {"text": "hello", "files": []}, []))
    assert "media" not in engine.calls[-1] and engine.calls[-1]["messages"][0]["content"] == "hello"
    messages, media = engine_request([{"role": "user", "content": [{"path": "a.jpg"}, "Compare <image> with this"]}])
    assert messages[0]["content"] == "Compare <image> with this" and media == {"images": ["a.jpg"]}
    messages, media = engine_request(
        [
            {"role": "user", "content": {"path": "clip.mp4"}},  # an attachment shown as its own message
            {"role": "user", "content": "What happens?"},
            {"role": "assistant", "content": "hmm", "metadata": {"title": "Thinking"}},
        ]
    )
    assert messages == [{"role": "user", "content": "<video>What happens?"}] and media == {"videos": ["clip.mp4"]}


def test_earlier_attachments_count_when_the_model_changes_and_plain_user_turns_stay_apart() -> None:
    history = [{"role": "user", "content": [{"path": "a.png"}, "Colour?"]}, {"role": "assistant", "content": "red"}]
    with pytest.raises(TuneforgeError, match=r"text-only template.*press Clear to start a new one"):
        list(respond(_MediaEngine("qwen"), "And now?", history))
    messages, media = engine_request([{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}])
    assert [m["content"] for m in messages] == ["hi", "again"] and media == {}


@pytest.mark.parametrize(
    ("template", "upload", "match"),
    [
        ("qwen", "x.png", "template 'qwen' is a text-only template"),
        ("gemma3n", "x.png", "names media plugin 'gemma3n', which tuneforge does not implement yet"),
        ("qwen3_vl", "x.mp4", "takes images, not videos"),
        ("qwen2_vl", "notes.txt", "notes.txt: not an image, video or audio file"),
    ],
)
def test_uploads_a_model_cannot_take_are_refused_before_the_engine(template: str, upload: str, match: str) -> None:
    engine = _MediaEngine(template)
    with pytest.raises(TuneforgeError, match=match):
        list(respond(engine, {"text": "hi", "files": [upload]}, []))
    assert engine.calls == []


def test_the_engines_own_media_kinds_decide_over_its_templates() -> None:
    """An engine that reports its plugin's kinds (Qwen-VL takes videos where its video processor builds) is
    believed; one that does not falls back to the template's plugin."""
    engine = _MediaEngine()
    engine.media_kinds = ("images", "videos")
    list(respond(engine, {"text": "What happens?", "files": ["clip.mp4"]}, []))
    assert engine.calls[-1]["media"] == {"videos": ["clip.mp4"]}
    engine.media_kinds = ()
    with pytest.raises(TuneforgeError, match="has media plugin 'qwen2_vl', but the loaded model takes no media"):
        list(respond(engine, {"text": "hi", "files": ["x.png"]}, []))


def test_refusals_become_a_gradio_error_and_the_box_is_cleared_after_sending(tmp_path: Path) -> None:
    from tuneforge.webui.webchat import chat_updates

    with pytest.raises(gr.Error, match="text-only template"):
        list(chat_updates(_MediaEngine("qwen"), {"text": "hi", "files": ["x.png"]}, []))
    box, history = list(chat_updates(_MediaEngine(), {"text": "hi", "files": [_image(tmp_path)]}, []))[-1]
    assert box == {"text": "", "files": []} and history[-1]["content"] == "red"


def test_webchat_offers_uploads_only_for_a_model_with_a_media_plugin() -> None:
    from tuneforge.webui.webchat import build_app

    def boxes(app) -> set[str]:
        return {type(block).__name__ for block in app.blocks.values()} & {"MultimodalTextbox", "Textbox"}

    vision = build_app(_MediaEngine("qwen2_vl"))
    uploads = [b for b in vision.blocks.values() if isinstance(b, gr.MultimodalTextbox)]
    assert len(uploads) == 1 and uploads[0].file_types == ["image", "video"]
    assert "MultimodalTextbox" not in boxes(build_app(_MediaEngine("qwen")))


def test_chat_tab_switches_to_the_upload_box_for_a_multimodal_model() -> None:
    from tuneforge.webui.tab_misc import input_boxes

    text, media = input_boxes(("images",))
    assert text["visible"] is False and media["visible"] is True and media["file_types"] == ["image"]
    text, media = input_boxes(())
    assert text["visible"] is True and media["visible"] is False


# --- the Multimodal form group ---------------------------------------------------------------------------------

MM_KEYS = [
    "freeze_vision_tower",
    "freeze_multi_modal_projector",
    "freeze_language_model",
    "image_max_pixels",
    "image_min_pixels",
    "video_max_pixels",
    "video_min_pixels",
    "video_fps",
    "video_maxlen",
]


def test_multimodal_group_fields_reach_the_config_and_load_back(tmp_path: Path) -> None:
    assert [f.key for f in forms.FIELDS if f.group == "multimodal"] == MM_KEYS
    values = {f.key: forms.default_value(f) for f in forms.FIELDS}
    assert values["image_max_pixels"] == "768*768" and values["freeze_vision_tower"] is True
    values.update(
        model_name_or_path="Qwen2-VL-2B-Instruct",
        dataset=["mllm_demo"],
        output_dir="o",
        freeze_vision_tower=False,
        freeze_language_model=True,
        image_max_pixels="512*512",
        image_min_pixels="1024",
        video_fps=1.5,
        video_maxlen=16,
    )
    config = forms.form_to_config(values, tmp_path)
    assert config["freeze_vision_tower"] is False and config["freeze_language_model"] is True
    assert config["image_max_pixels"] == 512 * 512 and config["image_min_pixels"] == 1024
    assert config["video_fps"] == 1.5 and config["video_maxlen"] == 16
    assert "image_max_pixels: 262144" in forms.command_preview(config)
    cfg = forms.validate(config)
    assert cfg.model.image_max_pixels == 262144 and cfg.method.freeze_language_model is True
    back = forms.config_to_form(yaml.safe_load(forms.to_yaml(config)))
    assert back["image_max_pixels"] == "512*512" and back["video_maxlen"] == 16
    assert forms.form_to_config({**values, **back}, tmp_path) == config


def test_a_bad_pixel_count_names_the_field() -> None:
    values = {f.key: forms.default_value(f) for f in forms.FIELDS}
    with pytest.raises(ConfigError, match="image_max_pixels: 'big' is not a pixel count"):
        forms.form_to_config({**values, "image_max_pixels": "big"})


def test_multimodal_labels_exist_in_every_language() -> None:
    from tuneforge.webui.locale import LANGS, strings

    for lang in LANGS:
        missing = [k for k in ["group.multimodal", *(f"field.{k}" for k in MM_KEYS)] if k not in strings(lang)]
        assert not missing, (lang, missing)
    assert strings("zh")["field.freeze_vision_tower"] == "冻结视觉编码器"


# --- model picker ----------------------------------------------------------------------------------------------


def test_picker_lists_multimodal_models_whose_plugin_is_built_marked() -> None:
    from tuneforge.webui.modelbar import picker_choices

    choices = picker_choices()
    marked = {value: label for label, value in (c for c in choices if isinstance(c, tuple))}
    assert marked["Qwen2-VL-7B-Instruct"] == "Qwen2-VL-7B-Instruct (multimodal: images, videos)"
    assert "Qwen2.5-VL-3B-Instruct" in marked and "Qwen3-VL-2B-Instruct" in marked
    assert "Qwen3-0.6B-Thinking" in choices  # text models stay plain names
    values = {c[1] if isinstance(c, tuple) else c for c in choices}
    assert "Gemma-3n-E2B-Instruct" not in values and "ERNIE-4.5-VL-28B-A3B-Instruct" not in values  # not built yet
    assert marked["LLaVA-1.5-7B-Chat"] == "LLaVA-1.5-7B-Chat (multimodal: images)"


# --- dataset previews with media -------------------------------------------------------------------------------


def _mllm_copy(shared_dir: Path, tmp_path: Path) -> Path:
    """mllm_demo and mllm_video_demo registered in a writable folder with their media."""
    src = shared_dir / "lf-data"
    folder = tmp_path / "data"
    shutil.copytree(src / "mllm_demo_data", folder / "mllm_demo_data")
    registry = json.loads((src / "dataset_info.json").read_text())
    for name in ("mllm_demo", "mllm_video_demo"):
        shutil.copy(src / f"{name}.json", folder / f"{name}.json")
    keep = {k: registry[k] for k in ("mllm_demo", "mllm_video_demo")}
    (folder / "dataset_info.json").write_text(json.dumps(keep))
    return folder


def test_registered_dataset_preview_shows_thumbnails_and_media_names(shared_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    from tuneforge.webui.datasets import raw_rows, rows_media

    folder = _mllm_copy(shared_dir, tmp_path)
    rows = raw_rows(folder, "mllm_demo", 3)
    gallery, names = rows_media(folder, "mllm_demo", rows)
    assert [caption for _, caption in gallery] == ["row 0: 1.jpg", "row 0: 1.jpg", "row 1: 2.jpg", "row 2: 3.jpg"]
    with Image.open(gallery[0][0]) as thumb:
        assert max(thumb.size) <= 160
    assert names.splitlines()[0] == "- row 0 · images: 1\\.jpg, 1\\.jpg"  # Markdown, shown literally
    rows = raw_rows(folder, "mllm_video_demo", 2)
    gallery, names = rows_media(folder, "mllm_video_demo", rows)
    assert gallery == [] and names.splitlines() == ["- row 0 · videos: 1\\.mp4", "- row 1 · videos: 2\\.avi"]


def test_data_tab_reads_a_media_table_with_thumbnails_and_guessed_columns(shared_dir: Path, tmp_path: Path) -> None:
    from tuneforge.webui.context import Context
    from tuneforge.webui.tab_data import MAP_KEYS, _read

    folder = _mllm_copy(shared_dir, tmp_path)
    (folder / "mllm_demo_data" / "3.jpg").unlink()
    ctx = Context.create(tmp_path)
    out = _read(ctx, "en", None, str(folder / "mllm_demo.json"), "data")
    table, gallery, names, formatting, *mapping, status = out
    assert formatting["value"] == "sharegpt"  # a conversation column was found
    assert len(table) == 5 and "Read 6 rows" in status
    assert table["images"][0] == '["mllm_demo_data/1.jpg", "mllm_demo_data/1.jpg"]'  # shown as JSON text
    captions = [caption for _, caption in gallery["value"]]
    assert captions == ["row 0: 1.jpg", "row 0: 1.jpg", "row 1: 2.jpg", "row 3: 1.jpg", "row 3: 1.jpg", "row 4: 2.jpg"]
    assert gallery["visible"] is True and "- row 2 · images: 3\\.jpg (1 not found)" in names
    guessed = dict(zip(MAP_KEYS, (m["value"] for m in mapping), strict=True))
    assert guessed["messages"] == "messages" and guessed["images"] == "images" and guessed["videos"] == ""


def test_token_preview_shows_media_tokens_compactly() -> None:
    from tuneforge.webui.datasets import token_preview_html

    vocab = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "Who?", "Kane."]

    class _Tokenizer:
        def decode(self, ids, skip_special_tokens=False):
            return "".join(vocab[i] for i in ids)

    ids = [0, *[1] * 64, 2, 3, 4]
    html = token_preview_html([{"input_ids": ids, "labels": [-100] * 67 + [4]}], _Tokenizer())
    assert html.count("image_pad") == 1 and "×64" in html and "Kane." in html


def test_train_tab_preview_of_mllm_demo_shows_rows_thumbnails_and_compact_tokens(
    shared_dir: Path, tmp_path: Path, tiny_qwen2_vl: Path
) -> None:
    from tuneforge.webui.context import Context
    from tuneforge.webui.tab_train import _preview_data

    folder = _mllm_copy(shared_dir, tmp_path)
    ctx = Context.create(tmp_path, tiny_qwen2_vl.parent)
    values = {f.key: forms.default_value(f) for f in forms.FIELDS}
    values.update(model_name_or_path=str(tiny_qwen2_vl), template="qwen2_vl", dataset=["mllm_demo"])
    values.update(dataset_dir=str(folder), output_dir="out", finetuning_type="full")
    ctx.form, ctx.lang = {key: key for key in values}, "lang"  # components stand-ins: the form's own keys
    rows, gallery, names, tokens, status = _preview_data(ctx, {**values, "lang": "en"})
    assert status.startswith("Preview of mllm\\_demo"), status
    assert len(rows) == 3 and len(gallery["value"]) == 4 and "row 2 · images: 3\\.jpg" in names
    assert re.search(r"&lt;\|image_pad\|&gt;×\d+", tokens) and tokens.count("image_pad") <= 6


def test_registering_a_media_table_keeps_its_media_columns_and_warns_of_unreachable_files(
    shared_dir: Path, tmp_path: Path
) -> None:
    from tuneforge.webui.context import Context
    from tuneforge.webui.tab_data import MAP_KEYS, _register

    source = _mllm_copy(shared_dir, tmp_path) / "mllm_demo.json"
    ctx = Context.create(tmp_path)
    columns = [{"messages": "messages", "images": "images"}.get(key, "") for key in MAP_KEYS]
    status, _ = _register(ctx, "en", None, str(source), "sharegpt", "vl", False, "elsewhere", *columns)
    entry = json.loads((tmp_path / "elsewhere" / "dataset_info.json").read_text())["vl"]
    assert entry["columns"] == {"messages": "messages", "images": "images"} and entry["formatting"] == "sharegpt"
    assert entry["tags"] == {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
    }
    assert "Registered vl" in status and "**8 media file(s) of this dataset are not found from" in status
    status, _ = _register(ctx, "en", None, str(source), "sharegpt", "vl", False, "data", *columns)
    assert "Registered vl" in status and "not found" not in status  # the media folder is beside it
    from tuneforge.data.convert import convert_rows
    from tuneforge.data.loading import read_dataset
    from tuneforge.data.registry import resolve_datasets
    from tuneforge.data.report import RowReport

    (attr,) = resolve_datasets("vl", tmp_path / "data")
    report = RowReport()
    converted = convert_rows(read_dataset(attr, report), attr, report)
    assert len(converted.rows) == 6 and not report.problems  # the role/content turns read as LF reads mllm_demo


def test_embedded_images_show_as_the_loader_reads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parquet / Hugging Face `Image` values ({bytes, path}, or raw bytes) preview like files on disk."""
    from tuneforge.webui.media import preview_media

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    png = Path(_image(tmp_path)).read_bytes()
    rows = [{"images": [{"bytes": png, "path": "red.png"}, png]}, {"images": "gone.png"}]
    gallery, names = preview_media(rows, {"images": "images"}, tmp_path / "data")
    assert [caption for _, caption in gallery] == ["row 0: red.png", "row 0: (embedded)"]
    assert names.splitlines() == [
        "- row 0 · images: red\\.png, \\(embedded\\)",
        "- row 1 · images: gone\\.png (1 not found)",
    ]


def test_the_web_chat_sends_the_image_to_the_real_engine(tiny_qwen2_vl: Path, tmp_path: Path) -> None:
    """Through the inference engine (random large weights, so answers depend on the image): the same question about
    a red and a blue square gets different greedy answers, and the Chat tab would offer image uploads."""
    from media_helpers import random_vlm_engine, square_image

    engine = random_vlm_engine(tiny_qwen2_vl, "qwen2_vl")
    try:
        from tuneforge.webui.media import engine_kinds

        assert engine_kinds(engine) == engine.media_kinds and "images" in engine.media_kinds
        answers = []
        for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
            square_image(tmp_path / f"{name}.png", colour)
            sent = {"text": "What colour?", "files": [str(tmp_path / f"{name}.png")]}
            answers.append(list(respond(engine, sent, [], "", 0.0, 1.0, 6))[-1][-1]["content"])
        assert answers[0] != answers[1], answers
    finally:
        engine.close(timeout=5)
