"""Regenerate the pinned loss trajectories in tests/references/ (run when a change is MEANT to alter the numbers,
and say why in the commit).

    PYTHONPATH=src python scripts/pin_trajectories.py [case ...]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main(names: list[str]) -> None:
    """Run each case (all by default) on CPU and write its losses."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    sys.path.insert(0, str(TESTS))
    from trajectory_cases import CASES, STEPS, make_model, reference_path, run_case, write_data

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["HF_DATASETS_CACHE"] = str(root / "hf-cache")
        os.environ["TUNEFORGE_CACHE"] = str(root / "cache")
        model, data = make_model(root / "model"), write_data(root / "data")
        for name in names or list(CASES):
            values = run_case(name, model, data, root / name)
            if len(values["loss"]) != STEPS:
                raise SystemExit(f"{name}: expected {STEPS} logged steps, got {values}")
            record = {"case": name, "config": CASES[name], "steps": STEPS, "values": values}
            reference_path(name).parent.mkdir(parents=True, exist_ok=True)
            reference_path(name).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            print(f"{name}: loss {' '.join(f'{x:.6f}' for x in values['loss'])}")


if __name__ == "__main__":
    main(sys.argv[1:])
