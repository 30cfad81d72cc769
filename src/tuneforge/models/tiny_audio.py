"""A random-initialised audio-language model of a real architecture (Qwen2-Audio), for tests.

`make_tiny_audio("qwen2_audio", out)` writes a ~20M-parameter `Qwen2AudioForConditionalGeneration` (most of it
the 151,936-word embedding and output head; a one-layer Whisper-style audio encoder of width 32) with the Qwen2
tokenizer tuneforge builds offline plus Qwen2-Audio's three audio tokens (`<|AUDIO|>`, `<|audio_bos|>`,
`<|audio_eos|>`, appended after the Qwen2 specials, so their ids differ from the real checkpoint's), the real feature
extractor (a `WhisperFeatureExtractor` with Qwen2-Audio's 128 mel bins, 16 kHz, 30-second windows), the processor
(and its chat template) and a generation config. The folder loads with plain `AutoModelForSeq2SeqLM` (the class
transformers and LLaMA-Factory use for audio-text models), `AutoProcessor`, `AutoFeatureExtractor` and
`AutoTokenizer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.models.tiny import AUDIO_ARCHES, _generation_config, media_text_config
from tuneforge.models.tokenizer import tokenizer_dir

__all__ = ["AUDIO_ARCHES", "AUDIO_TOKENS", "build_audio_config", "describe_audio", "make_tiny_audio"]

AUDIO_TOKENS = ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")  # Qwen2-Audio's audio placeholder and markers
MEL_BINS = 128  # Qwen2-Audio's feature size (Whisper large-v3 style)
MAX_SOURCE_POSITIONS = 1500  # 30 s of 10 ms frames, halved by the encoder's strided convolution


def audio_tokenizer() -> Any:
    """The offline Qwen2 tokenizer with Qwen2-Audio's audio tokens added as special tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir("qwen2")))
    tokenizer.add_special_tokens({"extra_special_tokens": list(AUDIO_TOKENS)}, replace_extra_special_tokens=False)
    return tokenizer


def build_audio_config(audio_token_id: int, *, layers: int = 2, hidden: int = 64) -> Any:
    """Config of a tiny Qwen2-Audio: the Qwen2 text stack of tiny.py and a one-layer audio encoder of width 32."""
    from transformers import AutoConfig

    text = media_text_config(layers, hidden, tie_word_embeddings=False)  # a separate output head
    audio = {
        "model_type": "qwen2_audio_encoder",
        "num_mel_bins": MEL_BINS,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "d_model": 32,
        "max_source_positions": MAX_SOURCE_POSITIONS,
    }
    return AutoConfig.for_model(
        "qwen2_audio", text_config=text, audio_config=audio, audio_token_index=audio_token_id, tie_word_embeddings=False
    )


def feature_extractor() -> Any:
    """Qwen2-Audio's feature extractor: Whisper log-mel features, 128 bins, 16 kHz, 30-second windows."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=MEL_BINS, sampling_rate=16000, return_attention_mask=True)


def save_audio_processor(out: Path) -> Any:
    """Write the processor (feature extractor, tokenizer, chat template) and return its tokenizer."""
    from transformers import Qwen2AudioProcessor

    tokenizer = audio_tokenizer()
    processor = Qwen2AudioProcessor(feature_extractor=feature_extractor(), tokenizer=tokenizer)
    tokenizer.chat_template = processor.chat_template  # the template Qwen2-Audio checkpoints ship
    processor.save_pretrained(str(out))
    return tokenizer


def make_tiny_audio(arch: str, out: Path, *, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Write a tiny random `arch` audio-language model (`qwen2_audio`, or the `qwen2_5_omni` thinker, see
    tiny_omni.py) with its processor and generation config into `out`."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    if arch == "qwen2_5_omni":
        from tuneforge.models.tiny_omni import make_tiny_omni

        return make_tiny_omni(out, layers=layers, hidden=hidden, seed=seed)

    tokenizer = save_audio_processor(out)
    config = build_audio_config(tokenizer.convert_tokens_to_ids(AUDIO_TOKENS[0]), layers=layers, hidden=hidden)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSeq2SeqLM.from_config(config, dtype=torch.float32).eval()
    model.generation_config = _generation_config("qwen2")
    model.save_pretrained(str(out))
    return out


def describe_audio(path: Path) -> str:
    """One line for `tuneforge make-tiny`: the model type, sizes and parameter count of the model at `path`."""
    import torch
    from transformers import AutoConfig

    from tuneforge.models.multimodal import media_auto_class

    config = AutoConfig.from_pretrained(str(path))
    with torch.device("meta"):
        count = sum(p.numel() for p in media_auto_class(config).from_config(config).parameters())
    text = config.text_config
    return (
        f"wrote {config.model_type} model ({text.num_hidden_layers} layers, hidden {text.hidden_size}, "
        f"audio encoder layers {config.audio_config.encoder_layers}, {count:,} parameters) to {path}"
    )
