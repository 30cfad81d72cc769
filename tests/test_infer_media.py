"""The inference engine with media: marks placed and expanded as in training, tensors at prefill, Qwen-VL's 3-D
rotary positions kept per row so text and image requests decode together in one batch."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from media_helpers import square_image
from tuneforge.errors import TuneforgeError
from tuneforge.infer.media import place_marks

torch = pytest.importorskip("torch")

QUESTION = [{"role": "user", "content": "What colour?"}]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("images")
    square_image(folder / "red.png", (255, 0, 0), size=56)
    square_image(folder / "blue.png", (0, 0, 255), size=84)
    return {"red": str(folder / "red.png"), "blue": str(folder / "blue.png")}


@pytest.fixture
def vlm(tiny_vlm_engine):
    return tiny_vlm_engine


def _generate(engine, messages, media) -> str:
    """transformers' own generate (greedy) on the engine's prompt and media tensors."""
    prompt = engine.encode_chat(messages, media=media)
    ids = torch.tensor([prompt.ids])
    extra = dict(prompt.media or {})
    if extra:
        extra["mm_token_type_ids"] = (ids == engine.plugin.image_token_id).int()
    out = engine.backend.model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), **extra, max_new_tokens=8, do_sample=False
    )
    return engine.tokenizer.decode(out[0, len(prompt.ids) :], skip_special_tokens=True)


@pytest.mark.parametrize("names", [["red"], ["blue"], ["red", "blue"]])
def test_image_answers_equal_transformers_generate(vlm, images, names):
    media = {"images": [images[n] for n in names]}
    assert vlm.chat(QUESTION, media=media, temperature=0, max_new_tokens=8).content == _generate(vlm, QUESTION, media)


def test_the_image_reaches_the_model(vlm, images):
    red, blue = ({"images": [images[n]]} for n in ("red", "blue"))
    answers = {vlm.chat(QUESTION, media=m, temperature=0, max_new_tokens=8).content for m in (red, blue, None)}
    assert len(answers) == 3


def test_text_and_image_requests_batch_together_and_answer_as_alone(vlm, images):
    _check_mixed_batch(vlm, images)


def _check_mixed_batch(engine, images) -> None:
    """A running image request (its rows' position deltas) is joined by text and image requests; each answer is
    the answer of the same request alone."""
    jobs = [None, {"images": [images["red"]]}, None, {"images": [images["blue"], images["red"]]}, None]
    results: dict[int, str] = {}

    def run(index: int) -> None:
        messages = [{"role": "user", "content": "What colour?" + " x" * index}]
        results[index] = engine.chat(messages, media=jobs[index], temperature=0, max_new_tokens=10).content

    engine.backend.peak_batch = 0
    first = engine.stream_chat(QUESTION, media={"images": [images["blue"]]}, temperature=0, max_new_tokens=30)
    head = next(first).content  # running before the others arrive: they merge into its batch
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    long_answer = head + "".join(d.content for d in first)
    assert engine.backend.peak_batch > 2
    for index, media in enumerate(jobs):
        messages = [{"role": "user", "content": "What colour?" + " x" * index}]
        assert engine.chat(messages, media=media, temperature=0, max_new_tokens=10).content == results[index]
    alone = engine.chat(QUESTION, media={"images": [images["blue"]]}, temperature=0, max_new_tokens=30).content
    assert alone == long_answer


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "template"), [("qwen2_5_vl", "qwen2_vl"), ("qwen3_vl", "qwen3_vl_nothink")])
def test_qwen2_5_vl_and_qwen3_vl_answer_as_transformers_and_batch(arch, template, images, tmp_path):
    """Qwen2.5-VL (windowed vision attention) and Qwen3-VL (interleaved M-RoPE, deepstack) take the same path."""
    from media_helpers import random_vlm_engine
    from tuneforge.models.tiny import make_tiny

    engine = random_vlm_engine(make_tiny(arch, tmp_path / arch, seed=0), template)
    try:
        for media in ({"images": [images["red"]]}, {"images": [images["blue"], images["red"]]}):
            answer = engine.chat(QUESTION, media=media, temperature=0, max_new_tokens=8).content
            assert answer == _generate(engine, QUESTION, media)
        _check_mixed_batch(engine, images)
    finally:
        engine.close()


def test_marks_go_first_in_the_first_user_message_as_lf_does():
    messages = [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Q"}]
    media = {"images": ["a", "b"], "videos": ["v"], "audios": ["s"]}
    assert place_marks(messages, media)[1]["content"] == "<audio><video><image><image>Q"
    marked = [{"role": "user", "content": "A <image> B"}]
    assert place_marks(marked, {"images": ["a"]}) == marked


def test_marks_are_expanded_into_the_image_tokens(vlm, images):
    prompt = vlm.encode_chat([{"role": "user", "content": "Look: <image> now"}], media={"images": [images["red"]]})
    text = vlm.tokenizer.decode(prompt.ids)
    assert "Look: <|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|> now" in text  # 56 px: 2x2 merged
    assert prompt.media["image_grid_thw"].tolist() == [[1, 4, 4]]


@pytest.mark.parametrize(
    ("messages", "media", "message"),
    [
        (QUESTION, {"images": ["/nonexistent/a.png"]}, "image file '/nonexistent/a.png' not found"),
        (QUESTION, {"audios": ["x.wav"]}, "This model takes images, videos, not audios"),
        (QUESTION, {"pictures": ["x.png"]}, "unknown kind 'pictures'"),
        ([{"role": "user", "content": "<image><image>Q"}], "red", "2 <image> marks in the messages but 1 images"),
        ([{"role": "user", "content": "<image>Q"}], None, "1 <image> marks in the messages but 0 images"),
    ],
)
def test_bad_media_is_refused_clearly(vlm, images, messages, media, message):
    media = {"images": [images["red"]]} if media == "red" else media
    with pytest.raises(TuneforgeError, match=message):
        vlm.encode_chat(messages, media=media)


def test_a_backend_without_media_refuses_media(vlm, images):
    from tuneforge.infer.engine import Engine

    text_only = Engine(object(), vlm.tokenizer, vlm.template, vlm.defaults, "m", plugin=vlm.plugin)
    with pytest.raises(TuneforgeError, match="infer_backend: huggingface"):
        text_only.encode_chat(QUESTION, media={"images": [images["red"]]})


def test_a_text_model_takes_no_media_and_keeps_marks_literal(qwen_tokenizer, images):
    from tuneforge.data.templates import get_template
    from tuneforge.infer.engine import Engine
    from tuneforge.infer.params import SamplingParams

    backend = type("Backend", (), {"takes_media": True})()
    engine = Engine(backend, qwen_tokenizer, get_template("qwen", qwen_tokenizer), SamplingParams(), "m")
    assert engine.media_kinds == ()
    with pytest.raises(TuneforgeError, match="text-only: it takes no images"):
        engine.encode_chat(QUESTION, media={"images": [images["red"]]})
    prompt = engine.encode_chat([{"role": "user", "content": "<image>?"}])
    assert "<image>?" in qwen_tokenizer.decode(prompt.ids)


def test_a_multimodal_model_needs_a_template_with_a_built_plugin(tiny_qwen2_vl: Path, qwen_tokenizer):
    from tuneforge.config import load_config
    from tuneforge.data.templates import get_template
    from tuneforge.infer.media import engine_plugin

    cfg = load_config({"model_name_or_path": str(tiny_qwen2_vl), "template": "qwen"})
    with pytest.raises(TuneforgeError, match=r"multimodal model \(qwen2_vl\) but template 'qwen' is a text template"):
        engine_plugin(cfg, get_template("qwen", qwen_tokenizer), qwen_tokenizer)


def test_media_needs_the_kv_cache(vlm, images):
    from tuneforge.infer.requests import GenerationRequest

    prompt = vlm.encode_chat(QUESTION, media={"images": [images["red"]]})
    vlm.backend.use_cache = False
    try:
        with pytest.raises(TuneforgeError, match="use_kv_cache: true"):
            vlm.backend.submit(GenerationRequest(prompt.ids, vlm.sampling(), print, media=prompt.media))
    finally:
        vlm.backend.use_cache = True


class _Greedy:
    """The engine with greedy 6-token defaults (what `generate_all` samples with)."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def sampling(self):
        return self.engine.sampling(temperature=0, max_new_tokens=6)


def test_prediction_generates_with_each_rows_images(vlm, images):
    from tuneforge.train.predict import generate_all

    media = [{"images": [images["red"]]}, {"images": []}, {"images": [images["blue"]]}]
    prompts = [vlm.encode_chat(QUESTION, media=m).ids for m in media]  # marks expanded, as in dataset rows
    expected = [vlm.chat(QUESTION, media=m, temperature=0, max_new_tokens=6).content for m in media]
    assert generate_all(_Greedy(vlm), prompts, media=media) == expected
