"""`tuneforge export` to a Hugging Face folder: merged-model fidelity, files, refusals and atomic output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from export_helpers import base_with_adapters, export_cfg, shrink_vocab, train_lora
from tuneforge.errors import TuneforgeError
from tuneforge.export import hf
from tuneforge.export.runner import export_command

PROMPTS = ["Hello, how are you?", "The capital of France is", "1 2 3 4"]


@pytest.fixture(scope="module")
def base(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2 model with a 3k-token vocabulary (loads and saves in a fraction of the time)."""
    return shrink_vocab(tiny_qwen2, tmp_path_factory.mktemp("base") / "qwen2")


@pytest.fixture(scope="module")
def adapters(base: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two different LoRA adapters on the tiny Qwen2 model."""
    root = tmp_path_factory.mktemp("adapters")
    return [train_lora(base, root / f"lora{i}", seed=i) for i in (1, 2)]


@pytest.fixture(scope="module")
def merged(base: Path, adapters: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with both adapters merged, exported in float32."""
    out = tmp_path_factory.mktemp("export") / "merged"
    return export_command(export_cfg(base, out, adapters))


def _ids(tokenizer, text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt")["input_ids"]


def test_merged_logits_equal_base_plus_adapters(base: Path, adapters: list[Path], merged: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    reference = base_with_adapters(base, adapters)
    exported = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    plain = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = _ids(tokenizer, prompt)
            want, got = reference(ids).logits, exported(ids).logits
            torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
            assert (plain(ids).logits - want).abs().max() > 1e-3, "the adapters should change the model"


def test_merged_greedy_text_equals_peft(base: Path, adapters: list[Path], merged: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    reference = base_with_adapters(base, adapters)
    exported = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    for prompt in PROMPTS:
        ids = _ids(tokenizer, prompt)
        kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
        want = reference.generate(input_ids=ids, **kwargs)
        got = exported.generate(input_ids=ids, **kwargs)
        assert tokenizer.decode(got[0]) == tokenizer.decode(want[0])


def test_export_folder_contents(merged: Path) -> None:
    from transformers import AutoTokenizer

    from tuneforge.data.templates import get_template

    names = {p.name for p in merged.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "Modelfile", "tokenizer.json"} <= names
    tokenizer = AutoTokenizer.from_pretrained(merged)
    template = get_template("qwen", tokenizer)
    assert tokenizer.chat_template == template.to_jinja()
    generation = json.loads((merged / "generation_config.json").read_text())
    eos = generation["eos_token_id"]
    assert (eos if isinstance(eos, list) else [eos]) == template.stop_token_ids(tokenizer)
    assert json.loads((merged / "config.json").read_text())["use_cache"] is True
    assert (merged / "Modelfile").read_text().startswith("FROM .\n")
    assert not list(merged.parent.glob(f"{hf.STAGING_MARK}*")), "no temporary folder left beside the export"


def test_sharded_weights_reload(base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    files = hf.write_weights(hf.unique_state_dict(model), tmp_path, max_shard_gb=0.0002)
    model.config.save_pretrained(tmp_path)
    index = json.loads((tmp_path / hf.SAFE_INDEX).read_text())
    assert len(files) >= 2 and set(index["weight_map"].values()) == {f.name for f in files}
    assert "lm_head.weight" not in index["weight_map"], "tied head is stored once"
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor, atol=0, rtol=0)


def test_plan_shards_respects_budget() -> None:
    assert hf.plan_shards({"a": 4, "b": 4, "c": 4, "d": 20}, 8) == [["a", "b"], ["c"], ["d"]]


def test_legacy_bin_and_dtype(base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = export_command(export_cfg(base, tmp_path / "legacy", export_legacy_format=True, infer_dtype="bfloat16"))
    assert (out / hf.BIN_NAME).is_file() and not (out / hf.SAFE_NAME).exists()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16


def test_value_head_is_copied(base: Path, adapters: list[Path], tmp_path: Path) -> None:
    import shutil

    adapter = tmp_path / "rm_adapter"
    shutil.copytree(adapters[0], adapter)
    (adapter / "value_head.safetensors").write_bytes(b"head")
    out = export_command(export_cfg(base, tmp_path / "rm", [adapter]))
    assert (out / "value_head.safetensors").read_bytes() == b"head"


def test_existing_export_dir_refused_unless_overwrite(base: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(TuneforgeError, match="overwrite_output_dir"):
        export_command(export_cfg(base, target))
    out = export_command(export_cfg(base, target, overwrite_output_dir=True))
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ({"quantization_bit": 8, "quantization_method": "eetq"}, "only bitsandbytes weights can be dequantized"),
        ({"export_hub_model_id": "me/model"}, "HF_HUB_OFFLINE"),
        ({"export_quantization_bit": 5, "export_quantization_dataset": "x.jsonl"}, "2, 3, 4 or 8"),
        ({"export_quantization_bit": 4}, "export_quantization_dataset"),
        ({"export_quantization_bit": 4, "export_quantization_dataset": "x.jsonl"}, "CUDA GPU"),
        ({"export_quantization_bit": 4, "export_format": "gguf"}, "export_gguf_type"),
    ],
)
def test_clear_refusals(
    base: Path, adapters: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: dict, match: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("tuneforge.export.quantize._cuda", lambda: False)
    with pytest.raises(TuneforgeError, match=match):
        export_command(export_cfg(base, tmp_path / "out", adapters[:1] if "quantization_bit" in keys else [], **keys))
    assert not (tmp_path / "out").exists()


def test_missing_gptq_library_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.export.quantize import check_export_quantization

    cfg = export_cfg(tmp_path, tmp_path / "o", export_quantization_bit=4, export_quantization_dataset="c4.jsonl")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(TuneforgeError, match=r"pip install .tuneforge\[quantize\]."):
        check_export_quantization(cfg, cuda=True)


def test_calibration_samples(tmp_path: Path, qwen_tokenizer) -> None:
    from tuneforge.export.quantize import calibration_samples

    data = tmp_path / "c4.jsonl"
    data.write_text("\n".join(json.dumps({"text": "word " * 50 + str(i)}) for i in range(5)))
    samples = calibration_samples(str(data), qwen_tokenizer, nsamples=3, maxlen=16)
    assert len(samples) == 3 and all(len(s["input_ids"]) == 16 == sum(s["attention_mask"]) for s in samples)


def test_failure_mid_write_leaves_nothing(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("tuneforge.export.ollama.write_modelfile", broken)
    with pytest.raises(OSError, match="disk full"):
        export_command(export_cfg(base, tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []


KILLED_EXPORT = """
import sys, time
import tuneforge.export.hf as hf
real = hf._save_shard
def slow(*args, **kwargs):
    real(*args, **kwargs)
    print("WRITTEN", flush=True)
    time.sleep(60)
hf._save_shard = slow
sys.path.insert(0, sys.argv[3])
from export_helpers import export_cfg
from tuneforge.export.runner import export_command
export_command(export_cfg(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.slow
def test_killed_export_never_looks_complete(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    here = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(base), str(out), here],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while proc.stdout.readline().strip() != "WRITTEN":
            assert time.monotonic() < deadline and proc.poll() is None, "export subprocess ended early"
        assert list(tmp_path.glob(f"{hf.STAGING_MARK}out-*/model.safetensors")), "weights are being staged"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    export_command(export_cfg(base, out))
    assert (out / "model.safetensors").is_file()
    assert not list(tmp_path.glob(f"{hf.STAGING_MARK}*")), "the next export clears what the killed one left"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPTQ export quantization needs a CUDA GPU")
def test_gptq_4bit_export_reloads(base: Path, tmp_path: Path) -> None:
    pytest.importorskip("gptqmodel", reason="GPTQ export needs the gptqmodel package")
    from transformers import AutoModelForCausalLM

    data = tmp_path / "calib.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"Sample number {i} of calibration text. " * 20}) for i in range(16)))
    cfg = export_cfg(
        base,
        tmp_path / "gptq",
        export_quantization_bit=4,
        export_quantization_dataset=str(data),
        export_quantization_nsamples=8,
        export_quantization_maxlen=64,
        infer_dtype="float16",
    )
    out = export_command(cfg)
    assert json.loads((out / "config.json").read_text())["quantization_config"]["bits"] == 4
    model = AutoModelForCausalLM.from_pretrained(out, device_map={"": 0})
    assert model(torch.tensor([[1, 2, 3]], device="cuda")).logits.shape[-1] == model.config.vocab_size
