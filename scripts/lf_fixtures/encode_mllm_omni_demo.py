"""Encode LLaMA-Factory's mllm_demo, mllm_audio_demo and mllm_video_audio_demo rows through LLaMA-Factory 0.9.5's
qwen2_omni template and plugin (fixture generator).

Run with LLaMA-Factory's own environment (not in CI), from the repository root, on a tiny Qwen2.5-Omni thinker made
by tuneforge (its tokenizer, image processor and feature extractor are what the fixture depends on):

    tuneforge make-tiny --arch qwen2_5_omni --out /tmp/tiny_qwen2_5_omni
    /work/lfvenv/bin/pip install soundfile
    /work/lfvenv/bin/python scripts/lf_fixtures/encode_mllm_omni_demo.py /tmp/tiny_qwen2_5_omni

Writes input_ids and labels of every row of the three sets into `tests/fixtures/lf_mllm_omni_demo_ids.json`, which
`tests/test_multimodal_omni.py` compares against tuneforge. As in encode_mllm_audio_demo.py, torchaudio's removed
`load` / `functional.resample` are stood in for (the ids depend only on the resampled length) and torchvision is
hidden; the processor LLaMA-Factory reads is a plain object holding the image processor, feature extractor and
tokenizer (all its Omni plugin uses for images and audios), built from the folder's `processor_config.json`.
For videos (LF's default `video_fps` / `video_maxlen` / `video_max_pixels` / `video_min_pixels`, no
`use_audio_in_video`) the plugin calls the video processor, which transformers builds only with torchvision; it is
stood in for by `_VideoGrid`, which gives only `video_grid_thw` (all the token counts read) from the saved video
processor settings and transformers' `smart_resize`, as `Qwen2VLVideoProcessor` computes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encode_mllm_audio_demo import _stand_in_torchaudio
from encode_mllm_demo import CUTOFF, DATA, ROOT, _examples, _share_smart_resize


class _VideoGrid:
    """`video_grid_thw` of clips of PIL frames, from the video processor's saved settings."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings

    def __call__(self, videos: list, return_tensors: str = "pt") -> dict:
        import torch
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        s = self.settings
        grids = []
        for frames in videos:
            width, height = frames[0].size
            factor = s["patch_size"] * s["merge_size"]
            new_h, new_w = smart_resize(height, width, factor, s["size"]["shortest_edge"], s["size"]["longest_edge"])
            frames_t = -(-len(frames) // s["temporal_patch_size"])
            grids.append([frames_t, new_h // s["patch_size"], new_w // s["patch_size"]])
        return {"video_grid_thw": torch.tensor(grids)}


def _video_audio_examples(rows: list[dict]) -> dict[str, list]:
    """mllm_video_audio_demo rows in LLaMA-Factory's internal form (each with its video and its audio)."""
    examples = _examples(rows, kind="videos")
    examples["_audios"] = [[str(DATA / p) for p in row["audios"]] for row in rows]
    return examples


def main() -> int:
    sys.modules["torchvision"] = None
    _stand_in_torchaudio()
    _share_smart_resize()
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
        video_processor=_VideoGrid(parts["video_processor"]),
        feature_extractor=WhisperFeatureExtractor(**parts["feature_extractor"]),
        tokenizer=tokenizer,
        image_max_pixels=768 * 768,
        image_min_pixels=32 * 32,
        audio_sampling_rate=16000,
        video_max_pixels=256 * 256,
        video_min_pixels=16 * 16,
        video_fps=2.0,
        video_maxlen=128,
    )
    data_args = DataArguments(template="qwen2_omni", cutoff_len=CUTOFF)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    encoder = SupervisedDatasetProcessor(
        template=template, tokenizer=tokenizer, processor=processor, data_args=data_args
    )
    out: dict = {"template": "qwen2_omni", "cutoff_len": CUTOFF}
    for name, kind in (("mllm_demo", "images"), ("mllm_audio_demo", "audios"), ("mllm_video_audio_demo", None)):
        rows = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
        examples = _examples(rows, kind=kind) if kind else _video_audio_examples(rows)
        encoded = encoder.preprocess_dataset(examples)
        pairs = zip(encoded["input_ids"], encoded["labels"], strict=True)
        out[name] = [{"input_ids": ids, "labels": labels} for ids, labels in pairs]
    target = ROOT / "tests" / "fixtures" / "lf_mllm_omni_demo_ids.json"
    target.write_text(json.dumps(out) + "\n", encoding="utf-8")
    print(f"wrote {target} ({', '.join(f'{len(v)} {k}' for k, v in out.items() if isinstance(v, list))} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
