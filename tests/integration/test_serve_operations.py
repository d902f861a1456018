"""`ledgerline serve` as an operator runs it (issue 14): flags, the secret from a file, the log
level, and a standard error that is JSON lines only (uvicorn's own lines included), numbers as
numbers, a request id on every access line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx

from tests.api.processes import FAST_ARGON2_ENV, LEDGERLINE, free_port, wait_for_health

SECRET = "cd" * 32


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEDGERLINE, *args], env=env, capture_output=True, text=True, timeout=120)


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, **FAST_ARGON2_ENV, "LEDGERLINE_DATA_DIR": str(tmp_path / "data"),
           "LEDGERLINE_DATABASE_URL": f"sqlite:///{tmp_path}/l.sqlite3"}  # fmt: skip
    for name in [name for name in env if name.startswith("LEDGERLINE_") and name.endswith("_FILE")]:
        del env[name]
    env.pop("LEDGERLINE_SECRET_KEY", None)
    return env


def test_serve_logs_json_lines_only_and_takes_its_secret_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET + "\n")
    env = {**base_env(tmp_path), "LEDGERLINE_SECRET_KEY_FILE": str(tmp_path / "secret"),
           "LEDGERLINE_LOG_LEVEL": "debug", "LEDGERLINE_PORT": "1"}  # fmt: skip
    port = free_port()
    err, out = (tmp_path / "stderr").open("wb"), (tmp_path / "stdout").open("wb")
    server = subprocess.Popen([LEDGERLINE, "serve", "--port", str(port)], env=env, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}"  # the flag won over LEDGERLINE_PORT
    try:
        wait_for_health(url, 60)
        assert httpx.get(f"{url}/nope", headers={"X-Request-ID": "lost-7"}).status_code == 404
        assert httpx.get(f"{url}/metrics").status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        err.close()
        out.close()
    assert server.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    assert not (tmp_path / "data" / "secret.key").exists()  # the file's secret was used, none generated
    lines = (tmp_path / "stderr").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON: none is plain text
    assert {"uvicorn.error", "ledgerline.access"} <= {record["logger"] for record in records}
    assert any(record["level"] == "debug" for record in records) or len(records) > 3
    (lost,) = [r for r in records if r.get("request_id") == "lost-7" and r["logger"] == "ledgerline.access"]
    assert lost["status"] == 404 and isinstance(lost["duration_ms"], float) and lost["route"] is None
    assert SECRET not in (tmp_path / "stderr").read_text() + (tmp_path / "stdout").read_text()


def test_a_secret_given_twice_or_unreadable_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text(SECRET)
    both = {**base_env(tmp_path), "LEDGERLINE_SECRET_KEY": SECRET,
            "LEDGERLINE_SECRET_KEY_FILE": str(tmp_path / "secret")}  # fmt: skip
    unreadable = {**base_env(tmp_path), "LEDGERLINE_SECRET_KEY_FILE": str(tmp_path / "nowhere")}
    level = {**base_env(tmp_path), "LEDGERLINE_LOG_LEVEL": "chatty"}
    for env, message in (
        (both, "Error: set LEDGERLINE_SECRET_KEY or LEDGERLINE_SECRET_KEY_FILE, not both"),
        (unreadable, f"Error: LEDGERLINE_SECRET_KEY_FILE: cannot read {tmp_path / 'nowhere'}"),
        (level, "Error: LEDGERLINE_LOG_LEVEL must be one of"),
    ):
        done = run(["db", "init"], env)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(message) and "Traceback" not in done.stderr, done.stderr
        assert SECRET not in done.stderr


def test_serve_flags_are_checked(tmp_path: Path) -> None:
    for flags in (["--port", "0"], ["--workers", "0"], ["--port", "http"]):
        done = run(["serve", *flags], base_env(tmp_path))
        assert done.returncode == 2 and "Invalid value" in done.stderr, (flags, done.stderr)
    shown = run(["serve", "--help"], base_env(tmp_path)).stdout
    assert all(flag in shown for flag in ("--host", "--port", "--workers"))
