"""What every figure shares: the scale, the results table, the scratch database and the
`ledgerline` processes, run as a user runs them (the load and its accounting: ``bench.measure``)."""

from __future__ import annotations

import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

ADMIN_DSN = os.environ.get("LEDGERLINE_BENCH_PG", "postgresql://root@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
REPOSITORY = Path(__file__).parent.parent
TICK = os.sysconf("SC_CLK_TCK")


# ---- scale --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    name: str
    events: int  # the bulk-written log that is rebuilt and queried
    seconds: float  # each throughput or latency measurement
    history: int  # events of the user read as of a version
    lag_seconds: float  # live projection lag: how long to write
    revocations: int  # revocation trials

    @classmethod
    def of(cls, name: str) -> Scale:
        events = int(os.environ.get("LEDGERLINE_BENCH_EVENTS", "0"))
        if name == "quick":
            return cls("quick", events or 50_000, 4.0, 10_000, 8.0, 3)
        return cls("full", events or 1_000_000, 10.0, 10_000, 30.0, 5)


# ---- results ------------------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    value: float
    unit: str
    target: str  # e.g. ">= 3000", "<= 50"; "" for a figure only reported
    baseline: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """``target`` is ``OP NUMBER`` on the value, or ``NAME OP NUMBER`` on the ratio or an
        extra field; all of several targets joined by ``and`` must hold. None: no target."""
        if not self.target:
            return None
        for part in self.target.split(" and "):
            words = part.split()
            subject: float | None = self.value
            if len(words) == 3:
                subject = self.ratio if words[0] == "ratio" else self.extra.get(words[0])
            op, number = words[-2], float(words[-1])
            if subject is None or not (subject >= number if op == ">=" else subject <= number):
                return False
        return True

    def as_json(self, scale: str) -> dict[str, Any]:
        return {
            "value": _round(self.value),
            "baseline": None if self.baseline is None else _round(self.baseline),
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "unit": self.unit,
            "target": self.target,
            "met": self.met,
            "scale": scale,
            **self.extra,
        }


def _round(value: float) -> float:
    return round(value, 3) if abs(value) < 100 else round(value, 1)


def table(figures: Sequence[Figure]) -> str:
    head = ("figure", "value", "baseline", "ratio", "unit", "target", "met?")
    rows = [
        (
            f.key,
            _shown(f.value),
            "-" if f.baseline is None else _shown(f.baseline),
            "-" if f.ratio is None else f"{f.ratio:.2f}",
            f.unit,
            f.target or "-",
            "-" if f.met is None else "yes" if f.met else "NO",
        )
        for f in figures
    ]
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def _shown(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def write_results(figures: Sequence[Figure], scale: Scale, *, every_figure: bool) -> Path:
    """After a run of every figure, ``<scale>.json``, and ``latest.json`` too at full scale (the
    committed last full run: a quick run leaves it alone); else ``partial.json``."""
    RESULTS.mkdir(exist_ok=True)
    document = {f.key: f.as_json(scale.name) for f in figures}
    text = json.dumps(document, indent=2) + "\n"
    names = ["partial.json"]
    if every_figure:
        names = ["latest.json", "full.json"] if scale.name == "full" else [f"{scale.name}.json"]
    for name in names:
        (RESULTS / name).write_text(text)
    return RESULTS / names[0]


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# ---- the scratch database -----------------------------------------------------------------


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new database on the local server, dropped afterwards whatever happens."""
    name = f"ledgerline_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_connections(url: str) -> int:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity"
            ).fetchone()
    except psycopg.OperationalError:  # "too many clients already": none free for now
        return 0
    return int(row[0]) if row else 0


def wait_for_connections(url: str, needed: int, timeout: float = 300) -> None:
    """The server is shared (other test runs hold many of its 100 connections): wait until
    ``needed`` are free, so a figure does not fail or slow down on "too many clients"."""
    deadline = time.monotonic() + timeout
    while (free := free_connections(url)) < needed:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {free} of PostgreSQL's connections free after {timeout:.0f}s")
        time.sleep(2)


# ---- ledgerline processes -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Deployment:
    """The environment a user would give every ``ledgerline`` process, and the processes."""

    def __init__(self, database_url: str, workdir: Path, **settings: str) -> None:
        self.workdir = workdir
        self.env = {
            **os.environ,
            "LEDGERLINE_DATABASE_URL": database_url,
            "LEDGERLINE_SECRET_KEY": secrets.token_hex(32),
            "LEDGERLINE_DATA_DIR": str(workdir / "data"),
            **{f"LEDGERLINE_{name.upper()}": value for name, value in settings.items()},
        }
        self.processes: list[Process] = []

    @property
    def settings(self) -> dict[str, str]:
        return {k: v for k, v in self.env.items() if k.startswith("LEDGERLINE_")}

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run a command to completion; its output, or an error with its output."""
        done = subprocess.run(
            [str(BIN / "ledgerline"), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ledgerline {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def measured(self, *args: str) -> tuple[float, float]:
        """Run a command to completion (its output to its log); its seconds and peak RSS (MiB)."""
        log = self.workdir / f"{'-'.join(args)}.log"
        with log.open("w") as out:
            started = time.perf_counter()
            child = subprocess.Popen([str(BIN / "ledgerline"), *args], env=self.env, stdout=out, stderr=out)
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"ledgerline {' '.join(args)} failed:\n{log.read_text(errors='replace')}")
        return seconds, usage.ru_maxrss / 1024  # Linux: kilobytes

    def start(
        self,
        name: str,
        *args: str,
        port: int | None = None,
        module: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Process:
        """``ledgerline ARGS``; ``module``: ``python -m MODULE ARGS`` instead (a bench-only entry
        point of this repository, e.g. ``bench.tree_off``); ``env``: settings of its own."""
        env = {**self.env, **(env or {})}
        if port is not None:
            env["LEDGERLINE_PORT"] = str(port)
        program = [str(BIN / "ledgerline")]
        if module is not None:
            program = [str(BIN / "python"), "-m", module]
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
        process = Process(name, [*program, *args], env, self.workdir / f"{name}.log", port)
        self.processes.append(process)
        return process

    def serve(self, name: str, *, module: str | None = None, env: dict[str, str] | None = None) -> Process:
        """A ``serve`` on a free port, answering; started once more if it could not come up for
        want of connections (PostgreSQL is shared: other runs may hold most of its 100)."""
        for tries in (1, 2):
            process = self.start(name, "serve", port=free_port(), module=module, env=env)
            try:
                process.wait_ready()
                return process
            except RuntimeError:
                process.stop()
                if tries == 2 or "too many clients" not in process.log.read_text(errors="replace"):
                    raise
                wait_for_connections(self.env["LEDGERLINE_DATABASE_URL"], 50)
        raise AssertionError("unreachable")

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, port: int | None):
        self.name, self.port, self.log = name, port, log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(  # its own process group: stopped with its children
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str = "/health", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout}s:\n{self.tail()}")

    def wait_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            if text in self.log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not log {text!r} within {timeout}s:\n{self.tail()}")

    def wait_idle(self, timeout: float = 600, below: float = 0.1) -> float:
        """Wait until the process uses less than ``below`` of a core over two seconds running
        (e.g. the projector after catching up: its four idle workers polling every 0.2 s use
        about 0.05); seconds waited."""
        started = time.monotonic()
        quiet = 0
        while quiet < 2:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.name} still busy after {timeout:.0f}s:\n{self.tail()}")
            before = cpu_seconds(self.pid)
            time.sleep(1)
            quiet = quiet + 1 if cpu_seconds(self.pid) - before < below else 0
        return time.monotonic() - started

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (a graceful stop, as an operator would), SIGKILL after 20 s."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        except ProcessLookupError:
            pass


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (a `serve` with LEDGERLINE_WORKERS has worker children)."""
    found = [pid]
    for parent in found:
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                found.extend(int(child) for child in children.read_text().split())
            except OSError:
                continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK
