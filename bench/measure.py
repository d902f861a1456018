"""How a figure measures: the `wrk` load generator, CPU accounting, database session sampling
and py-spy profiles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.harness import BIN, RESULTS, Process, cpu_seconds, process_tree

PROFILE_RATE = 200  # py-spy samples per second


# ---- CPU accounting -----------------------------------------------------------------------


def run_queue_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (schedstat), so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _tree_seconds(tree: list[int]) -> tuple[float, float]:
    """CPU used and time spent waiting for a CPU, summed over a process tree."""
    return sum(cpu_seconds(pid) for pid in tree), sum(run_queue_seconds(pid) for pid in tree)


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuMeter:
    """CPU used by the named processes (and by PostgreSQL, every database of it) over a span,
    in cores (1.0 = one core busy for the whole span); and, as ``<name>_waiting_for_cpu``, how
    many of a process's threads were runnable but not running, on average (the machine is
    shared: this says whether the process was starved of CPU)."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids

    def __enter__(self) -> CpuMeter:
        self.started = time.monotonic()
        self.trees = {name: process_tree(pid) for name, pid in self.pids.items()}
        self.before = {name: _tree_seconds(tree) for name, tree in self.trees.items()}
        self.pg_before = {pid: cpu_seconds(pid) for pid in postgres_pids()}
        return self

    def __exit__(self, *_: object) -> None:
        span = time.monotonic() - self.started
        self.cores: dict[str, float] = {}
        for name, tree in self.trees.items():
            (cpu, waiting), (cpu_after, waiting_after) = self.before[name], _tree_seconds(tree)
            self.cores[name] = round((cpu_after - cpu) / span, 2)
            self.cores[f"{name}_waiting_for_cpu"] = round((waiting_after - waiting) / span, 2)
        pg = sum(cpu_seconds(pid) - self.pg_before.get(pid, 0.0) for pid in postgres_pids())
        self.cores["postgres"] = round(pg / span, 2)
        self.cores["machine_load"] = round(os.getloadavg()[0], 1)


# ---- wrk ----------------------------------------------------------------------------------

LUA_COMMON = r"""
local threads_started = 0
function setup(thread)
  thread:set("tid", threads_started)
  threads_started = threads_started + 1
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def lua_strings(values: Sequence[str]) -> str:
    """A Lua table literal of strings."""
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


class LoadError(RuntimeError):
    """Too many requests of a measurement failed (e.g. the shared server ran out of connections)."""


@dataclass
class Load:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    wrk_cores: float

    @property
    def rps(self) -> float:
        """Successful requests per second (non-2xx/3xx answers and socket errors excluded)."""
        return (self.requests - self.errors) / self.seconds

    def check(self, what: str, tolerance: float = 0.01) -> Load:
        """Refuse a measurement in which more than ``tolerance`` of the requests failed."""
        if self.errors > tolerance * self.requests:
            raise LoadError(f"{what}: {self.errors} of {self.requests} requests failed")
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 1),
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "wrk_cpu_cores": round(self.wrk_cores, 2),
        }


class Wrk:
    """One `wrk` run: ``request`` is Lua defining ``request()`` (and maybe ``delay()``); the
    thread number is ``tid`` (0-based)."""

    def __init__(self, url: str, request: str, *, threads: int, connections: int, seconds: float):
        self.url, self.threads, self.connections, self.seconds = url, threads, connections, seconds
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
        with script:
            script.write(LUA_COMMON + request)
        self.script = script.name

    def start(self) -> subprocess.Popen[str]:
        argv = [wrk_binary(), f"-t{self.threads}", f"-c{self.connections}", f"-d{self.seconds:.0f}s"]
        argv += ["--timeout", "30s", "-s", self.script, self.url]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, running: subprocess.Popen[str], cpu_seconds: float) -> Load:
        try:
            out, err = running.communicate(timeout=30)
        finally:
            os.unlink(self.script)
        if running.returncode != 0 or "WRKJSON" not in out:
            raise RuntimeError(f"wrk failed ({running.returncode}):\n{out}\n{err}")
        data = json.loads(out.split("WRKJSON", 1)[1].strip().splitlines()[0])
        seconds = data["duration_us"] / 1e6
        return Load(
            requests=data["requests"],
            seconds=seconds,
            errors=data["status_errors"] + data["socket_errors"],
            p50_ms=data["p50_us"] / 1000,
            p90_ms=data["p90_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            max_ms=data["max_us"] / 1000,
            wrk_cores=cpu_seconds / seconds,
        )

    def run(self) -> Load:
        return run_together([self])[0]


def run_together(runs: Sequence[Wrk]) -> list[Load]:
    """Start the runs at once, wait for all; each result carries its own wrk's CPU use."""
    procs = [run.start() for run in runs]
    cpu: list[float] = []
    try:
        for proc in procs:  # wait4 tells each child's own CPU time (its output is small)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu.append(usage.ru_utime + usage.ru_stime)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
    return [run.finish(proc, used) for run, proc, used in zip(runs, procs, cpu, strict=True)]


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: `make bench` installs it (apt-get install -y wrk)")
    return found


# ---- where the time goes ------------------------------------------------------------------


@contextmanager
def profiled(process: Process, name: str, seconds: float) -> Iterator[None]:
    """With LEDGERLINE_BENCH_PROFILE=1, py-spy samples ``process`` meanwhile into
    ``bench/results/profile-<name>.txt``: only the thread holding the GIL, so the samples say
    where the process's Python time goes (and their count, how busy the GIL was);
    `python -m bench.profile FILE` summarises it."""
    if os.environ.get("LEDGERLINE_BENCH_PROFILE") != "1":
        yield
        return
    RESULTS.mkdir(exist_ok=True)
    argv = [str(BIN / "py-spy"), "record", "--pid", str(process.pid), "--duration", str(max(1, int(seconds)))]
    argv += [
        "--subprocesses",  # the API's worker processes (LEDGERLINE_WORKERS)
        "--nonblocking",  # never pauses the process: its throughput stays what it would be
        "--gil",
        "--format",
        "raw",
        "--rate",
        str(PROFILE_RATE),
        "--output",
        str(RESULTS / f"profile-{name}.txt"),
    ]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            spy.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


class DbSampler:
    """Samples what the database's sessions are doing every ``interval`` s (from another
    thread) and reports the average number of sessions per state and wait event."""

    def __init__(self, url: str, interval: float = 0.02) -> None:
        self.url, self.interval = url, interval
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = (
            "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'cpu') FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'"
        )
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                self.samples += 1
                for _, what in conn.execute(query).fetchall():
                    self.counts[what] = self.counts.get(what, 0) + 1

    def __enter__(self) -> DbSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def average(self) -> dict[str, float]:
        """Active sessions on average, by what they wait for ('cpu': not waiting)."""
        ordered = sorted(self.counts.items(), key=lambda item: -item[1])
        return {what: round(count / max(1, self.samples), 2) for what, count in ordered}
