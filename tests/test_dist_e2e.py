"""Distributed training on CPU with gloo (slow): `tuneforge train` under its own torchrun launch equals one process.

Same global batch (2 ranks x 2 rows x 2 accumulation == 1 process x 2 rows x 4 accumulation), fp32, sequential
sampling: the loss trajectory and the final weights agree within 1e-5, for LoRA and full fine-tuning, over two
processes on one "node" and over two "nodes" (two torchrun launches rendezvousing on 127.0.0.1).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train_helpers import dist_args, read_log, write_identity_dataset

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_identity_dataset(tmp_path_factory.mktemp("dist_data"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "FORCE_TORCHRUN")}
    return env | extra


def _train(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def _free_port() -> str:
    from tuneforge.train.launch import free_port

    return str(free_port())


def _weights(out: Path) -> dict:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (out / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(out / name)


def _assert_same_run(a: Path, b: Path, tied_copy: bool = False) -> None:
    """Same losses and weights; `tied_copy`: b also holds the tied output head (FSDP's full state dict keeps it)."""
    losses_a = [r["loss"] for r in read_log(a) if "loss" in r]
    losses_b = [r["loss"] for r in read_log(b) if "loss" in r]
    assert len(losses_a) == 3  # one log line per step: only rank 0 writes the log
    assert losses_b == pytest.approx(losses_a, abs=1e-5)
    wa, wb = _weights(a), _weights(b)
    if tied_copy:
        torch.testing.assert_close(wb.pop("lm_head.weight"), wb["model.embed_tokens.weight"], atol=0, rtol=0)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-5, msg=key)


def _single(kind: str, model: Path, data: Path, factory: pytest.TempPathFactory) -> Path:
    out = factory.mktemp(f"single_{kind}") / "out"
    _finish(_train([*dist_args(model, data, kind), "gradient_accumulation_steps=4", f"output_dir={out}"], out.parent))
    return out


@pytest.fixture(scope="module")
def single_lora(tiny_qwen2: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _single("lora", tiny_qwen2, data_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def single_full(tiny_qwen2: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _single("full", tiny_qwen2, data_dir, tmp_path_factory)


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_two_processes_equal_one(kind: str, tiny_qwen2: Path, data_dir: Path, tmp_path: Path, request) -> None:
    common = dist_args(tiny_qwen2, data_dir, kind)
    single = request.getfixturevalue(f"single_{kind}")
    ddp = tmp_path / "ddp"
    proc = _train(
        [*common, "gradient_accumulation_steps=2", f"output_dir={ddp}"],
        tmp_path,
        FORCE_TORCHRUN="1",
        NPROC_PER_NODE="2",
    )
    out = _finish(proc)
    assert "torchrun --nnodes=1 --node_rank=0 --nproc_per_node=2" in out  # the exact command is shown
    assert out.count("Training finished.") == 1  # rank 0 alone reports (and writes) the outputs
    _assert_same_run(single, ddp)


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_fsdp2_on_cpu_equals_one_process(kind: str, tiny_qwen2: Path, data_dir: Path, tmp_path: Path, request) -> None:
    """`fsdp: full_shard` (FSDP2) over two gloo processes shards the model through accelerate and saves the full
    state dict: a loadable adapter or model equal to the single process's."""
    args = [*dist_args(tiny_qwen2, data_dir, kind), "gradient_accumulation_steps=2", f"output_dir={tmp_path / 'out'}"]
    args += ["fsdp=full_shard", 'fsdp_config={"fsdp_version": 2}']
    out = _finish(_train(args, tmp_path, FORCE_TORCHRUN="1", NPROC_PER_NODE="2"))
    assert out.count("FSDP2 on CPU: accelerate shards the model over the 2 gloo processes.") == 2
    assert "no effect on CPU" not in out
    _assert_same_run(request.getfixturevalue(f"single_{kind}"), tmp_path / "out", tied_copy=kind == "full")


README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_line(start: str, contains: str = "") -> str:
    """The README's command line that starts with `start` (and contains `contains`)."""
    lines = [ln.strip() for ln in README.read_text(encoding="utf-8").splitlines()]
    found = [ln for ln in lines if ln.startswith(start) and contains in ln]
    assert len(found) == 1, f"README should show one `{start}...{contains}` command"
    return found[0]


def _run_readme_nodes(nodes: list[tuple[str, dict[str, str]]], args: list[str], cwd: Path) -> list[str]:
    """Run each README command line with its environment (one per "node") at once; `cfg.yaml` holds `args` and
    `tuneforge` is this Python's."""
    import yaml

    cfg = cwd / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args)}))
    here = f"{sys.executable} -m tuneforge.cli train {cfg}"
    procs = [
        subprocess.Popen(
            ["bash", "-c", line.replace("tuneforge train cfg.yaml", here)],
            cwd=cwd,
            env=_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line, env in nodes
    ]
    return [_finish(proc) for proc in procs]


def _lora_args(model: Path, data: Path, out: Path) -> list[str]:
    return [*dist_args(model, data, "lora"), "gradient_accumulation_steps=2", f"output_dir={out}"]


def test_readme_two_machine_commands_equal_one_process(
    single_lora: Path, tiny_qwen2: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The README's two-machine lines, NODE_RANK 0 and 1, one process each, meeting on 127.0.0.1 (two "nodes")."""
    port = _free_port()
    lines = [
        _readme_line("FORCE_TORCHRUN=1 NNODES=2", f"NODE_RANK={rank}")
        .replace("MASTER_ADDR=10.0.0.1", "MASTER_ADDR=127.0.0.1")
        .replace("MASTER_PORT=29500", f"MASTER_PORT={port}")
        for rank in (0, 1)
    ]
    nodes = [(line, {"NPROC_PER_NODE": "1"}) for line in lines]
    outs = _run_readme_nodes(nodes, _lora_args(tiny_qwen2, data_dir, tmp_path / "out"), tmp_path)
    assert "--nnodes=2 --node_rank=1" in outs[1]
    assert "Training finished." in outs[0] and "Training finished." not in outs[1]
    _assert_same_run(single_lora, tmp_path / "out")


def test_readme_slurm_script_equals_one_process(
    single_lora: Path, tiny_qwen2: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The README's Slurm `srun` line as each of two tasks runs it (SLURM_NNODES=2, SLURM_NODEID 0 and 1)."""
    line = _readme_line("srun bash -c").removeprefix("srun ")
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": _free_port(), "NPROC_PER_NODE": "1", "SLURM_NNODES": "2"}
    nodes = [(line, env | {"SLURM_NODEID": str(node)}) for node in (0, 1)]
    outs = _run_readme_nodes(nodes, _lora_args(tiny_qwen2, data_dir, tmp_path / "out"), tmp_path)
    assert "--nnodes=2 --node_rank=1" in outs[1]
    _assert_same_run(single_lora, tmp_path / "out")


def test_killed_job_resumes_on_every_rank_and_equals_one_process(
    single_lora: Path, tiny_qwen2: Path, data_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL the whole 2-process job after its first checkpoint; the same command resumes every rank from it and
    ends with the losses and weights of the uninterrupted single process."""
    out = tmp_path / "out"
    args = [
        *dist_args(tiny_qwen2, data_dir, "lora"),
        "gradient_accumulation_steps=2",
        "save_steps=1",
        f"output_dir={out}",
    ]
    env = {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"}
    cmd = [sys.executable, "-m", "tuneforge.cli", "train", *args]
    job = subprocess.Popen(cmd, cwd=tmp_path, env=_env(**env), stdout=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and job.poll() is None and not (out / "checkpoint-1").exists():
        time.sleep(0.05)
    ranks = [_rank_pid(job.pid, rank) for rank in (0, 1)]  # torchrun starts each rank in its own session
    for pid in [*ranks, job.pid]:  # the launcher and both ranks at once, as a machine failure would
        os.kill(pid, signal.SIGKILL)
    job.wait()
    assert not (out / "adapter_model.safetensors").exists(), "the job finished before it could be killed"
    resumed = _finish(_train(args, tmp_path, **env))
    assert resumed.count(f"Resuming from {out / 'checkpoint-'}") == 2  # each rank from the same checkpoint
    _assert_same_run(single_lora, out)


def test_a_dead_rank_stops_the_job_with_its_name(tiny_qwen2: Path, data_dir: Path, tmp_path: Path) -> None:
    """SIGKILL one rank mid-run: the job ends at once (no wait for ddp_timeout) naming the rank and its last line."""
    args = [*dist_args(tiny_qwen2, data_dir, "lora"), "max_steps=500", f"output_dir={tmp_path / 'out'}"]
    proc = _train(args, tmp_path, FORCE_TORCHRUN="1", NPROC_PER_NODE="2")
    log = tmp_path / "out" / "trainer_log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (log.exists() and log.read_text().strip()):
        time.sleep(0.2)
    assert proc.poll() is None, "the job ended before a rank could be killed"
    os.kill(_rank_pid(proc.pid, 1), signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-3000:]
    assert "rank 1 (local rank 1) died (signal 9)" in out
    assert "Its last log line: " in out and "Traceback" not in out.split("died (signal 9)")[-1]


def _rank_pid(parent: int, rank: int) -> int:
    """The pid of the child of `parent` whose environment says RANK=`rank`."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            ppid = int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc_dir / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(proc_dir.name)
    raise AssertionError(f"no rank {rank} process under {parent}")


def _stage_args(shared_dir: Path, model: Path, stage: str, dataset: str) -> list[str]:
    return [
        f"model_name_or_path={model}",
        f"stage={stage}",
        f"dataset={dataset}",
        f"dataset_dir={shared_dir / 'lf-data'}",
        "template=qwen",
        "max_samples=16",
        "cutoff_len=128",
        "max_steps=2",
        "save_steps=1000",
        "logging_steps=1",
        "per_device_train_batch_size=2",
        "learning_rate=1e-2",
        "lora_dropout=0",
        "disable_shuffling=true",
        "disable_gradient_checkpointing=true",
        "disable_tqdm=true",
        "report_to=none",
    ]


def _stage_two_processes_equal_one(args: list[str], tmp_path: Path, files: tuple[str, ...]) -> None:
    """The stage on one process (accumulating 2) and on two ranks: same losses, same saved weights."""
    from safetensors.torch import load_file

    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _finish(_train([*args, "gradient_accumulation_steps=2", f"output_dir={single}"], tmp_path))
    proc = _train([*args, f"output_dir={ddp}"], tmp_path, FORCE_TORCHRUN="1", NPROC_PER_NODE="2")
    _finish(proc)
    losses = [[r["loss"] for r in read_log(out) if "loss" in r] for out in (single, ddp)]
    assert len(losses[0]) == 2 and losses[1] == pytest.approx(losses[0], abs=1e-5)
    for name in files:
        wa, wb = load_file(single / name), load_file(ddp / name)
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-5, msg=key)


def test_reward_model_two_processes_equal_one(shared_dir: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    """Stage rm under DDP: the value head's forward runs through the DDP wrapper, so its gradients are all-reduced
    and the adapter and value head equal one process's."""
    args = _stage_args(shared_dir, tiny_qwen2, "rm", "dpo_en_demo")
    _stage_two_processes_equal_one(args, tmp_path, ("adapter_model.safetensors", "value_head.safetensors"))


@pytest.mark.parametrize(("stage", "dataset"), [("pt", "c4_demo"), ("dpo", "dpo_en_demo")])
def test_pretraining_and_dpo_two_processes_equal_one(
    stage: str, dataset: str, shared_dir: Path, tiny_qwen2: Path, tmp_path: Path
) -> None:
    """pt and the DPO family under DDP: a micro-batch loss averaged the same way, so two ranks equal one process."""
    args = _stage_args(shared_dir, tiny_qwen2, stage, dataset)
    _stage_two_processes_equal_one(args, tmp_path, ("adapter_model.safetensors",))


def test_kto_runs_on_two_processes(shared_dir: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    """KTO under DDP trains to the end; rank 0 alone writes the log and the adapter.

    Not compared with one process: its KL baseline is estimated per micro-batch, so the split changes it."""
    args = [*_stage_args(shared_dir, tiny_qwen2, "kto", "kto_en_demo"), f"output_dir={tmp_path / 'out'}"]
    out = _finish(_train(args, tmp_path, FORCE_TORCHRUN="1", NPROC_PER_NODE="2"))
    assert out.count("Training finished.") == 1
    losses = [r["loss"] for r in read_log(tmp_path / "out") if "loss" in r]
    assert len(losses) == 2 and all(loss == loss for loss in losses)
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_grpo_runs_on_two_processes(tiny_qwen2: Path, tmp_path: Path) -> None:
    """GRPO samples on the model inside the DDP wrapper and trains through it; rank 0 alone writes the outputs."""
    example = Path(__file__).resolve().parents[1] / "examples" / "grpo_lora.yaml"
    args = [
        str(example),
        f"model_name_or_path={tiny_qwen2}",
        f"dataset_dir={example.parent / 'data'}",
        f"output_dir={tmp_path / 'out'}",
        "max_steps=1",
        "max_samples=4",
        "max_new_tokens=8",
        "disable_tqdm=true",
    ]
    out = _finish(_train(args, tmp_path, FORCE_TORCHRUN="1", NPROC_PER_NODE="2"))
    assert out.count("Training finished.") == 1
    assert len([r for r in read_log(tmp_path / "out") if "loss" in r]) == 1
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
