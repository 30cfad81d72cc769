"""Thread layout of training processes and data workers (tuneforge.threads, data/parallel.py)."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from tuneforge import threads
from tuneforge.data import parallel
from tuneforge.data.loading import RawRows
from tuneforge.data.process import ProcessOptions

THREAD_VARS = (
    "TUNEFORGE_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "RAYON_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "LOCAL_WORLD_SIZE",
    threads.AUTO_MARKER,
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    previous = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(previous)


def _probe(_: int) -> tuple[int, str | None, str | None, str | None]:
    names = ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM")
    return (torch.get_num_threads(), *(os.environ.get(name) for name in names))


def _run_probe(workers: int) -> list[tuple]:
    with parallel.worker_pool(workers) as pool:
        return pool.map(_probe, range(workers), chunksize=1)


def test_each_worker_gets_its_share_of_the_cores(clean_env):
    clean_env.setattr(threads, "available_cores", lambda: 4)
    torch.set_num_threads(3)
    seen = _run_probe(2)
    assert seen == [(2, "2", "2", "false")] * 2  # 2 workers x 2 threads = 4 cores, tokenizers single-threaded
    assert torch.get_num_threads() == 3 and "TOKENIZERS_PARALLELISM" not in os.environ  # parent restored


def test_more_workers_than_cores_run_one_thread_each(clean_env):
    clean_env.setattr(threads, "available_cores", lambda: 2)
    assert {s[:3] for s in _run_probe(3)} == {(1, "1", "1")}


def test_workers_keep_the_users_thread_settings(clean_env):
    clean_env.setattr(threads, "available_cores", lambda: 4)
    clean_env.setenv("OMP_NUM_THREADS", "3")
    clean_env.setenv("TOKENIZERS_PARALLELISM", "true")
    assert _run_probe(2) == [(3, "3", "3", "true")] * 2


def test_training_threads_use_every_core_or_split_them_among_local_ranks(clean_env):
    assert threads.training_threads(cores=8, load=0.5) == (8, "all 8 available cores")
    clean_env.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.training_threads(cores=8, load=2.0)[0] == 4  # the load of our own two ranks
    clean_env.setenv("LOCAL_WORLD_SIZE", "16")
    assert threads.training_threads(cores=8, load=0.0)[0] == 1


def test_training_threads_leave_out_cores_other_processes_keep_busy(clean_env):
    assert threads.training_threads(cores=8, load=3.5) == (6, "6 of 8 cores free at load 3.5")
    assert threads.training_threads(cores=2, load=5.2)[0] == 1
    clean_env.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.training_threads(cores=8, load=6.0)[0] == 2  # 4 others busy: 4 free cores for 2 ranks


def test_training_threads_respect_the_user_but_not_torchruns_default(clean_env):
    clean_env.setenv("LOCAL_WORLD_SIZE", "2")
    clean_env.setenv("OMP_NUM_THREADS", "1")
    assert threads.training_threads(cores=8, load=0.0)[0] == 1  # the user's (or a foreign launcher's) choice
    clean_env.setenv(threads.AUTO_MARKER, "1")  # tuneforge's launch: torchrun put OMP_NUM_THREADS=1 there
    assert threads.training_threads(cores=8, load=0.0)[0] == 4
    clean_env.setenv("TUNEFORGE_NUM_THREADS", "3")
    assert threads.training_threads(cores=8, load=0.0)[0] == 3


def test_set_training_threads_applies_and_logs_once(clean_env, caplog):
    clean_env.setattr(threads, "available_cores", lambda: 2)
    clean_env.setattr(threads, "_logged", set())
    clean_env.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    with caplog.at_level(logging.INFO, logger="tuneforge.threads"):
        assert threads.set_training_threads() == 2
        threads.set_training_threads()
    assert torch.get_num_threads() == 2
    assert [r.getMessage() for r in caplog.records] == ["training intra-op threads: 2 (all 2 available cores)"]


def _rows(n: int) -> RawRows:
    return RawRows("d", [{"i": i} for i in range(n)], list(range(1, n + 1)))


def test_small_data_stays_in_process_and_says_why(clean_env, caplog):
    clean_env.setattr(threads, "available_cores", lambda: 8)
    clean_env.setattr(parallel, "available_cores", lambda: 8)
    sft = ProcessOptions(kind="sft")
    with caplog.at_level(logging.INFO, logger="tuneforge.data.parallel"):
        assert parallel.parallel_workers(_rows(100), sft, 4) == 1
    assert f"100 distinct rows < {parallel.MIN_DISTINCT_ROWS}" in caplog.text and "in-process" in caplog.text
    assert parallel.parallel_workers(_rows(parallel.MIN_DISTINCT_ROWS), sft, 4) == 4
    assert parallel.parallel_workers(_rows(parallel.MIN_DISTINCT_ROWS), sft, 32) == 8  # capped at the cores
    assert parallel.parallel_workers(_rows(parallel.MIN_DISTINCT_ROWS), ProcessOptions(kind="kto"), 4) == 1
    assert parallel.parallel_workers(_rows(10), sft, 1) == 1


SEEN: list[int] = []


def _fake_recipe(cfg) -> dict:
    SEEN.append(torch.get_num_threads())
    return {}


def test_cpu_training_run_sets_its_threads_before_the_recipe(clean_env, tmp_path, caplog):
    from types import SimpleNamespace

    from tuneforge.config import load_config
    from tuneforge.train import runner

    clean_env.setattr(threads, "available_cores", lambda: 2)
    clean_env.setattr(threads, "_load", lambda: 0.0)
    clean_env.setattr(threads, "_logged", set())
    clean_env.setattr(runner, "accelerator_count", lambda: 0)
    clean_env.setattr(runner, "stage", lambda name: SimpleNamespace(recipe=f"{__name__}:_fake_recipe"))
    torch.set_num_threads(1)
    cfg = load_config({"model_name_or_path": "m", "output_dir": str(tmp_path), "do_train": True}, paths=False)
    with caplog.at_level(logging.INFO, logger="tuneforge.threads"):
        runner.run(cfg)
    assert SEEN[-1] == 2 and "training intra-op threads: 2" in caplog.text


def test_tuneforge_torchrun_launch_marks_omp_default_as_not_the_users(clean_env):
    import torch.distributed.run as torchrun

    from tuneforge.train.launch import run_torchrun

    seen: list[str | None] = []
    clean_env.setattr(torchrun, "run", lambda args: seen.append(os.environ.get(threads.AUTO_MARKER)))
    run_torchrun(["--nproc_per_node=2", "-m", "tuneforge.cli"], "/tmp/unused")
    clean_env.delenv(threads.AUTO_MARKER)
    clean_env.setenv("OMP_NUM_THREADS", "4")  # the user's: ranks keep it
    run_torchrun(["--nproc_per_node=2", "-m", "tuneforge.cli"], "/tmp/unused")
    assert seen == ["1", None]
