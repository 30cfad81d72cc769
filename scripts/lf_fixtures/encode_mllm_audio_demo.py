"""Encode LLaMA-Factory's mllm_audio_demo rows through LLaMA-Factory 0.9.5's qwen2_audio template and plugin
(fixture generator).

Run with LLaMA-Factory's own environment (not in CI), from the repository root, on a tiny Qwen2-Audio folder made by
tuneforge (its tokenizer and feature extractor are what the fixture depends on):

    tuneforge make-tiny --arch qwen2_audio --out /tmp/tiny_qwen2_audio
    /work/lfvenv/bin/pip install soundfile
    /work/lfvenv/bin/python scripts/lf_fixtures/encode_mllm_audio_demo.py /tmp/tiny_qwen2_audio

LLaMA-Factory's supervised processor and Qwen2-Audio plugin expand each `<audio>` with the feature extractor
(16 kHz, padded to 30 s; the token count comes from its attention mask) and write input_ids and labels for every
row into `tests/fixtures/lf_mllm_audio_demo_ids.json`, which `tests/test_multimodal_audio.py` compares against
tuneforge.

LLaMA-Factory 0.9.5 reads audio with `torchaudio.load` and `torchaudio.functional.resample`, which torchaudio 2.9+
no longer has (the reference environment's torchaudio 2.13 is an empty package). Both are stood in for here:
loading by soundfile (the channels as rows, as torchaudio returns them), resampling by linear interpolation to
torchaudio's output length, ceil(samples x new rate / old rate). The token ids and labels depend only on that
length, never on the sample values. The reference environment's torchvision does not match its torch, so it is
hidden (the Qwen2-Audio processor does not need it).
"""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encode_mllm_demo import CUTOFF, DATA, ROOT, _examples


def _stand_in_torchaudio() -> None:
    """Give the empty torchaudio package the two functions LLaMA-Factory's audio path calls."""
    import soundfile
    import torch
    import torchaudio

    def load(path: str) -> tuple[torch.Tensor, int]:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return torch.from_numpy(samples.T.copy()), rate

    def resample(audio: torch.Tensor, old: int, new: int) -> torch.Tensor:
        length = math.ceil(audio.shape[-1] * new / old)
        return torch.nn.functional.interpolate(audio[None], size=length, mode="linear")[0]

    torchaudio.load = load
    torchaudio.functional = types.SimpleNamespace(resample=resample)


def main() -> int:
    sys.modules["torchvision"] = None
    _stand_in_torchaudio()
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoProcessor

    model = sys.argv[1]
    processor = AutoProcessor.from_pretrained(model)
    processor.audio_sampling_rate = 16000  # LLaMA-Factory's default `audio_sampling_rate`
    tokenizer = processor.tokenizer
    data_args = DataArguments(template="qwen2_audio", cutoff_len=CUTOFF)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    encoder = SupervisedDatasetProcessor(
        template=template, tokenizer=tokenizer, processor=processor, data_args=data_args
    )
    rows = json.loads((DATA / "mllm_audio_demo.json").read_text(encoding="utf-8"))
    encoded = encoder.preprocess_dataset(_examples(rows, kind="audios"))
    extractor = processor.feature_extractor.to_dict()
    out = {
        "template": "qwen2_audio",
        "cutoff_len": CUTOFF,
        "feature_extractor": {k: extractor[k] for k in ("feature_size", "sampling_rate", "hop_length", "n_samples")},
        "rows": [
            {"input_ids": ids, "labels": labels}
            for ids, labels in zip(encoded["input_ids"], encoded["labels"], strict=True)
        ],
    }
    target = ROOT / "tests" / "fixtures" / "lf_mllm_audio_demo_ids.json"
    target.write_text(json.dumps(out) + "\n", encoding="utf-8")
    print(f"wrote {target} ({len(out['rows'])} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
