"""Training jobs run by the web UI: separate `tuneforge train` processes, recorded on disk so a reopened page
(or a restarted server) finds them again.

Each job gets a run folder `<state>/runs/<id>/` holding the generated `train.yaml` and `train.log` (stdout and
stderr of the process; the output folder itself must stay empty for `tuneforge train` to start afresh). The
registry `<state>/jobs.json` lists the jobs: id, pid, output_dir, config and log paths, start time.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneforge.errors import TuneforgeError
from tuneforge.files import write_json_atomic

LOG_NAME = "trainer_log.jsonl"


class JobConflictError(TuneforgeError):
    """Another running job already writes the requested output folder."""


@dataclass
class Job:
    """One `tuneforge train` process started from the UI."""

    id: str
    pid: int
    output_dir: str
    config_path: str
    log_path: str
    started: float
    stop_requested: float | None = None
    returncode: int | None = None
    verb: str = "train"  # `eval` for benchmark jobs of the Evaluate tab

    @property
    def run_dir(self) -> Path:
        """The folder holding this job's config and log."""
        return Path(self.config_path).parent


def train_command(config_path: Path) -> list[str]:
    """The process the UI starts: the `tuneforge train` verb on the generated config."""
    return [sys.executable, "-m", "tuneforge.cli", "train", str(config_path)]


def job_command(config_path: Path, verb: str) -> list[str]:
    """The process of a job: `tuneforge train`, or `tuneforge eval` for a benchmark job."""
    return (
        train_command(config_path)
        if verb == "train"
        else [sys.executable, "-m", "tuneforge.cli", verb, str(config_path)]
    )


class JobRegistry:
    """Start, find, watch and stop training processes; state lives in `state_dir/jobs.json`."""

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "jobs.json"
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise registry updates between threads and between servers sharing the state folder."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.state_dir / "jobs.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def jobs(self) -> list[Job]:
        """Every recorded job, oldest first."""
        if not self.path.is_file():
            return []
        try:
            records = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return []  # a damaged registry only loses the list of past jobs; it never blocks new ones
        return [Job(**record) for record in records if isinstance(record, dict)]

    def _save(self, jobs: list[Job]) -> None:
        write_json_atomic(self.path, [asdict(job) for job in jobs])

    def get(self, job_id: str) -> Job | None:
        """The job with this id, if recorded."""
        return next((job for job in self.jobs() if job.id == job_id), None)

    def latest(self, verb: str = "train") -> Job | None:
        """The most recent running job of `verb`, else its most recent job (what a reopened page shows)."""
        jobs = [job for job in self.jobs() if job.verb == verb]
        running = [job for job in jobs if self.is_running(job)]
        return (running or jobs or [None])[-1]

    def start(self, config: dict[str, Any], verb: str = "train") -> Job:
        """Write `config` to a run folder and start `tuneforge VERB` on it in its own session."""
        out_key = "save_dir" if verb == "eval" else "output_dir"
        output_dir = str(Path(config[out_key]).resolve())
        with self._locked():
            jobs = self.jobs()
            self._refuse_shared_output(jobs, output_dir)
            job_id = time.strftime("%Y%m%d-%H%M%S-") + f"{len(jobs):03d}"
            run_dir = self.state_dir / "runs" / job_id
            run_dir.mkdir(parents=True, exist_ok=True)
            config_path, log_path = run_dir / f"{verb}.yaml", run_dir / f"{verb}.log"
            config_path.write_text(yaml.safe_dump({**config, out_key: output_dir}, sort_keys=False))
            process = self._spawn(config_path, log_path, verb)
            job = Job(job_id, process.pid, output_dir, str(config_path), str(log_path), time.time(), verb=verb)
            self._save([*jobs, job])
        return job

    def _refuse_shared_output(self, jobs: list[Job], output_dir: str) -> None:
        for job in jobs:
            if job.output_dir == output_dir and self.is_running(job):
                raise JobConflictError(
                    f"Job {job.id} (pid {job.pid}) is still writing {output_dir}; stop it or choose another "
                    "output folder."
                )

    def _spawn(self, config_path: Path, log_path: Path, verb: str = "train") -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                job_command(config_path, verb),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=config_path.parent,
                env=env,
                start_new_session=True,  # survives the page, the server's terminal and Ctrl+C on the server
            )
        self._children[process.pid] = process
        return process

    def is_running(self, job: Job) -> bool:
        """Whether the job's process is alive (and still the process we started, not a reused pid)."""
        child = self._children.get(job.pid)
        if child is not None:
            return child.poll() is None
        return _pid_runs(job.pid, job.config_path)

    def returncode(self, job: Job) -> int | None:
        """The exit status when this server started the job and it has ended; else the recorded one."""
        child = self._children.get(job.pid)
        if child is not None and child.poll() is not None:
            return child.returncode
        return job.returncode

    def stop(self, job: Job, wait: float = 10.0) -> bool:
        """Ask the job to stop: SIGINT first (the trainer saves a checkpoint after the current step and ends),
        SIGTERM on a second request (interrupts at once). Waits up to `wait` s; returns whether it ended."""
        if not self.is_running(job):
            return True
        first = job.stop_requested is None
        _signal_group(job.pid, signal.SIGINT if first else signal.SIGTERM)
        if first:
            self._update(job.id, stop_requested=time.time())
        deadline = time.time() + wait
        while time.time() < deadline and self.is_running(job):
            time.sleep(0.2)
        return not self.is_running(job)

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._locked():
            jobs = self.jobs()
            for job in jobs:
                if job.id == job_id:
                    for key, value in changes.items():
                        setattr(job, key, value)
            self._save(jobs)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the trainer and any data workers it started
    except (ProcessLookupError, PermissionError):
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


def _pid_runs(pid: int, config_path: str) -> bool:
    """Whether `pid` is a live, non-zombie process running on `config_path` (Linux /proc; else kill 0)."""
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        if Path("/proc/self").exists():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    # The command line is empty while a process starts (between fork and exec).
    return state not in ("Z", "X") and (config_path in cmdline or not cmdline)
