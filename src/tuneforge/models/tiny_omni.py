"""A random-initialised Qwen2.5-Omni thinker (images, video and audio in, text out), for tests.

`make_tiny_omni(out)` writes a ~20M-parameter `Qwen2_5OmniThinkerForConditionalGeneration` (model type
`qwen2_5_omni_thinker`: the part of Qwen2.5-Omni that LLaMA-Factory fine-tunes; no talker or vocoder) with a
one-block Qwen2.5-VL vision tower and a one-layer audio encoder of width 32, the Qwen2 tokenizer tuneforge builds
offline plus Qwen2.5-Omni's named media tokens (`<|IMAGE|>`, `<|AUDIO|>`, `<|VIDEO|>`, `<|vision_bos|>`, ...,
appended after the Qwen2 specials, so their ids differ from the real checkpoint's), the processor's parts (the
Qwen2-VL image processor with tuneforge's tiny pixel limits, the video processor config and Qwen2-Audio's Whisper
feature extractor, in `processor_config.json`), a chat template and a generation config. The folder loads with plain
`AutoModelForImageTextToText`, `AutoImageProcessor`, `AutoFeatureExtractor`, `AutoTokenizer` and (with torchvision,
which transformers needs for the video processor) `AutoProcessor`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.models.tiny import _generation_config, media_text_config, mrope_section
from tuneforge.models.tiny_audio import MAX_SOURCE_POSITIONS, MEL_BINS, feature_extractor
from tuneforge.models.tiny_vlm import _VIDEO_CONFIG, MERGE_SIZE, PATCH_SIZE, chat_template, image_processor
from tuneforge.models.tokenizer import tokenizer_dir

# the tokenizer attributes Qwen2_5OmniProcessor reads, and their tokens
OMNI_TOKENS = {
    "image_token": "<|IMAGE|>",
    "audio_token": "<|AUDIO|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}


def omni_tokenizer() -> Any:
    """The offline Qwen2 tokenizer with Qwen2.5-Omni's named media tokens, and its chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir("qwen2")), extra_special_tokens=OMNI_TOKENS)
    tokenizer.chat_template = chat_template("qwen2.5-omni.jinja")
    return tokenizer


def build_omni_config(tokenizer: Any, *, layers: int = 2, hidden: int = 64) -> Any:
    """Config of a tiny thinker: the Qwen2 text stack of tiny.py with multimodal rotary sections, a one-block
    vision tower and a one-layer audio encoder."""
    from transformers import AutoConfig

    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in OMNI_TOKENS.items()}
    # no model_type: the thinker's own text config class; untied, a separate output head
    text = media_text_config(layers, hidden, model_type=None, tie_word_embeddings=False)
    text["rope_parameters"]["mrope_section"] = mrope_section(hidden)
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": hidden}
    vision |= {
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "window_size": 56,
        "fullatt_block_indexes": [0],
    }
    audio = {"num_mel_bins": MEL_BINS, "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 64}
    audio |= {"d_model": 32, "output_dim": hidden, "max_source_positions": MAX_SOURCE_POSITIONS}
    return AutoConfig.for_model(
        "qwen2_5_omni_thinker",
        text_config=text,
        vision_config=vision,
        audio_config=audio,
        audio_token_index=ids["audio_token"],
        image_token_index=ids["image_token"],
        video_token_index=ids["video_token"],
        vision_start_token_id=ids["vision_bos_token"],
        vision_end_token_id=ids["vision_eos_token"],
        audio_start_token_id=ids["audio_bos_token"],
        audio_end_token_id=ids["audio_eos_token"],
        user_token_id=tokenizer.convert_tokens_to_ids("user"),
    )


def save_omni_processor(out: Path) -> Any:
    """Write the tokenizer, chat template and processor parts (as `Processor.save_pretrained` nests them; written
    directly because transformers builds the video processor only with torchvision); return the tokenizer."""
    tokenizer = omni_tokenizer()
    tokenizer.save_pretrained(str(out))
    (out / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    parts = {
        "processor_class": "Qwen2_5OmniProcessor",
        "image_processor": image_processor("qwen2_5_vl").to_dict(),
        "video_processor": dict(_VIDEO_CONFIG),
        "feature_extractor": feature_extractor().to_dict(),
    }
    (out / "processor_config.json").write_text(json.dumps(parts, indent=2) + "\n", encoding="utf-8")
    return tokenizer


def make_tiny_omni(out: Path, *, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-Omni thinker with its processor parts and generation config into `out`."""
    import torch
    from transformers import AutoModelForImageTextToText

    tokenizer = save_omni_processor(out)
    config = build_omni_config(tokenizer, layers=layers, hidden=hidden)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).eval()
    model.generation_config = _generation_config("qwen2")
    model.save_pretrained(str(out))
    return out
