"""Encode LLaMA-Factory's mllm_demo and mllm_audio_demo rows through LLaMA-Factory 0.9.5's qwen2_omni template and
plugin (fixture generator).

Run with LLaMA-Factory's own environment (not in CI), from the repository root, on a tiny Qwen2.5-Omni thinker made
by tuneforge (its tokenizer, image processor and feature extractor are what the fixture depends on):

    tuneforge make-tiny --arch qwen2_5_omni --out /tmp/tiny_qwen2_5_omni
    /work/lfvenv/bin/pip install soundfile
    /work/lfvenv/bin/python scripts/lf_fixtures/encode_mllm_omni_demo.py /tmp/tiny_qwen2_5_omni

Writes input_ids and labels of every row of both sets into `tests/fixtures/lf_mllm_omni_demo_ids.json`, which
`tests/test_multimodal_omni.py` compares against tuneforge. As in encode_mllm_audio_demo.py, torchaudio's removed
`load` / `functional.resample` are stood in for (the ids depend only on the resampled length) and torchvision is
hidden; the processor LLaMA-Factory reads is a plain object holding the image processor, feature extractor and
tokenizer (all its Omni plugin uses for images and audios), built from the folder's `processor_config.json`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encode_mllm_audio_demo import _stand_in_torchaudio
from encode_mllm_demo import CUTOFF, DATA, ROOT, _examples


def main() -> int:
    sys.modules["torchvision"] = None
    _stand_in_torchaudio()
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer, WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    model = Path(sys.argv[1])
    parts = json.loads((model / "processor_config.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    processor = SimpleNamespace(
        image_processor=Qwen2VLImageProcessorPil(**parts["image_processor"]),
        feature_extractor=WhisperFeatureExtractor(**parts["feature_extractor"]),
        tokenizer=tokenizer,
        image_max_pixels=768 * 768,
        image_min_pixels=32 * 32,
        audio_sampling_rate=16000,
    )
    data_args = DataArguments(template="qwen2_omni", cutoff_len=CUTOFF)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    encoder = SupervisedDatasetProcessor(
        template=template, tokenizer=tokenizer, processor=processor, data_args=data_args
    )
    out: dict = {"template": "qwen2_omni", "cutoff_len": CUTOFF}
    for name, kind in (("mllm_demo", "images"), ("mllm_audio_demo", "audios")):
        rows = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
        encoded = encoder.preprocess_dataset(_examples(rows, kind=kind))
        pairs = zip(encoded["input_ids"], encoded["labels"], strict=True)
        out[name] = [{"input_ids": ids, "labels": labels} for ids, labels in pairs]
    target = ROOT / "tests" / "fixtures" / "lf_mllm_omni_demo_ids.json"
    target.write_text(json.dumps(out) + "\n", encoding="utf-8")
    print(f"wrote {target} ({len(out['mllm_demo'])} + {len(out['mllm_audio_demo'])} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
