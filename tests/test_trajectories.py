"""Pinned loss trajectories: each stage's first steps on a tiny CPU fp32 model match `tests/references/`.

The equivalence tests compare two paths with each other; these pin what a stage computes, so a change that moves
both sides together fails here. When a change is meant to alter the numbers, regenerate with
`PYTHONPATH=src python scripts/pin_trajectories.py [case ...]` and say why in the commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trajectory_cases import ABS, CASES, COMMON, PINNED, REL, STEPS, load_reference, run_case, write_data

pytestmark = pytest.mark.slow
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("trajectory-data"))


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("case", list(CASES))
def test_trajectory_matches_reference(case: str, tiny_qwen2: Path, data: Path, tmp_path: Path) -> None:
    pinned = load_reference(case)
    got = run_case(case, tiny_qwen2, data, tmp_path / "out")
    for key in PINNED:
        assert len(got[key]) == STEPS
        assert got[key] == pytest.approx(pinned[key], rel=REL, abs=ABS), (case, key)


def test_every_case_has_a_reference() -> None:
    stored = {p.stem for p in Path(__file__).parent.joinpath("references").glob("*.json")}
    assert stored == set(CASES)


def test_rm_evaluates_after_saving_with_its_head(tiny_qwen2: Path, data: Path, tmp_path: Path) -> None:
    """The one recipe saves, then evaluates: the reward model's head is saved beside (not inside) the adapter and
    is back on the model for the final evaluation."""
    import json

    from safetensors.torch import load_file

    from tuneforge.config import load_config
    from tuneforge.train import run_training

    out = tmp_path / "rm"
    values = {**COMMON, **CASES["rm"], "model_name_or_path": str(tiny_qwen2), "dataset_dir": str(data)}
    run_training(
        load_config(
            {**values, "output_dir": str(out), "max_steps": 2, "val_size": 2, "do_train": True, "do_eval": True}
        )
    )
    results = json.loads((out / "all_results.json").read_text())
    assert "eval_loss" in results and "eval_rewards/accuracies" in results
    assert sorted(load_file(out / "value_head.safetensors")) == ["v_head.summary.bias", "v_head.summary.weight"]
    assert not any("v_head" in key for key in load_file(out / "adapter_model.safetensors"))
