"""The OpenAPI document is exact: schemathesis's own CLI (`st run --checks all`, every check, every
phase) against a real `ledgerline serve` on SQLite finds no undocumented status or content type,
no schema-valid request rejected, no schema-violating one accepted, no response off its schema.

What no schema can say (state, time, two fields at once) a client knows and so does the run:
``tests/api/schemathesis_hooks.py``. Deterministic (``--generation-deterministic``) and small
(``LEDGERLINE_OPENAPI_EXAMPLES`` per operation and phase, 2 by default).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx

from tests.api.processes import FAST_ARGON2_ENV, LEDGERLINE, free_port, wait_for_health
from tests.api.test_fuzz_gate import ST, env_for, running

EXAMPLES = os.environ.get("LEDGERLINE_OPENAPI_EXAMPLES", "2")
PASSWORD = "Correct-Horse-9"
ROOT = Path(__file__).resolve().parents[2]


def test_schemathesis_finds_the_document_exact(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **env_for(f"sqlite:///{tmp_path / 'ledgerline.sqlite3'}", tmp_path, port),
        **FAST_ARGON2_ENV,
        "LEDGERLINE_STREAM_ALLOW_LOOPBACK": "true",  # subscriptions to 127.0.0.1 (see the hooks)
    }
    subprocess.run([LEDGERLINE, "db", "init"], env=env, check=True, capture_output=True, timeout=120)
    created = subprocess.run(
        [LEDGERLINE, "create-admin", "--username", "root", "--email", "root@example.com",
         "--password", PASSWORD],
        env=env, check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    key = created.stdout.strip().splitlines()[-1]
    with running([LEDGERLINE, "serve"], env=env, logs=tmp_path):
        base_url = f"http://127.0.0.1:{port}"
        wait_for_health(base_url, 60)
        hooks_env = {**env, **_state_the_run_needs(base_url, key)}
        hooks_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        done = subprocess.run(
            [ST, "run", f"{base_url}/schema/openapi.json", "--checks", "all", "-H", f"X-API-Key: {key}",
             "--max-examples", EXAMPLES, "--generation-deterministic", "--no-color"],
            env=hooks_env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
    output = done.stdout + done.stderr
    summary = output[output.find("SUMMARY") :]
    tested = re.search(r"Tested: (\d+)", summary)
    cases = re.search(r"(\d+) generated", summary)
    print(f"schemathesis: {tested and tested[1]} operations, {cases and cases[1]} cases\n{summary}")
    assert tested is not None and int(tested[1]) >= 46, output[-5000:]
    assert done.returncode == 0, output[-20000:]


def _state_the_run_needs(base_url: str, key: str) -> dict[str, str]:
    """The hooks' environment: the admin's password, a decoy for the run's own user and key,
    and how many events the log holds before the run."""
    with httpx.Client(base_url=base_url, headers={"X-API-Key": key}, timeout=30) as client:
        admin = client.get("/api/v1/users/me").json()["data"]["id"]
        admin_key = client.get("/api/v1/api-keys").json()["data"][0]["id"]
        decoy = client.post(
            "/api/v1/users", json={"username": "decoy", "email": "decoy@example.com", "password": PASSWORD}
        ).json()["data"]["id"]
        decoy_key = client.post(
            "/api/v1/api-keys", json={"name": "decoy", "permissions": {"users:read": True}}
        ).json()["data"]["id"]
        tree = client.get("/api/v1/audit-logs/checkpoint").text.splitlines()[1]
    return {
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
        "LEDGERLINE_FUZZ_PASSWORD": PASSWORD,
        "LEDGERLINE_FUZZ_DECOYS": f"{admin}={decoy},{admin_key}={decoy_key}",
        "LEDGERLINE_FUZZ_TREE": tree,
    }
