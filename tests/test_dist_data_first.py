"""Who builds the data cache first in a multi-node job (`data_shared_file_system`, as LLaMA-Factory has it)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tuneforge.train.dist import preprocesses_first


@pytest.mark.parametrize(
    ("rank", "local_rank", "shared", "local"),
    [(0, 0, True, True), (1, 0, False, True), (1, 1, False, False), (3, 1, False, False)],
)
def test_first_rank_per_node_or_for_the_job(monkeypatch, rank: int, local_rank: int, shared: bool, local: bool) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    assert preprocesses_first(True) is shared
    assert preprocesses_first(False) is local


def _rank(rank: int, store: str, shared: bool, out: str) -> None:
    """One rank of a two-"node" job (one process per node, so each is its node's local rank 0)."""
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="2")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    from tuneforge.train.dist import main_process_first

    with main_process_first(shared):
        entered = time.monotonic()
        time.sleep(1.0 if rank == 0 else 0.0)  # rank 0 "preprocesses" for a second
        left = time.monotonic()
    Path(out, f"{rank}.json").write_text(json.dumps([entered, left]))
    dist.destroy_process_group()


@pytest.mark.parametrize("shared", [True, False], ids=["shared-fs", "own-disks"])
def test_other_nodes_wait_only_with_a_shared_file_system(tmp_path: Path, shared: bool) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_rank, args=(str(tmp_path / "store"), shared, str(tmp_path)), nprocs=2, join=True)
    (_, zero_left), (one_entered, _) = (json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1))
    if shared:
        assert one_entered >= zero_left  # node 1 reads the cache node 0 built
    else:
        assert one_entered < zero_left  # node 1 builds its own cache meanwhile
