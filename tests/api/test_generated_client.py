"""A client generated from `/schema/openapi.json` (openapi-python-client, offline, during the test)
drives a real `ledgerline serve`: register, log in, create a key with the token, read with the key;
answers come back as the generated typed models, problems as the generated ``Problem``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.api.processes import FAST_ARGON2_ENV, LEDGERLINE, free_port, wait_for_health
from tests.api.test_fuzz_gate import env_for, running

GENERATOR = str(Path(sys.executable).with_name("openapi-python-client"))
PACKAGE = "ledgerline_generated_client"


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A served API and the client package generated from its document, imported."""
    port = free_port()
    env = {**env_for(f"sqlite:///{tmp_path / 'ledgerline.sqlite3'}", tmp_path, port), **FAST_ARGON2_ENV}
    with running([LEDGERLINE, "serve"], env=env, logs=tmp_path):
        base_url = f"http://127.0.0.1:{port}"
        wait_for_health(base_url, 60)
        document = tmp_path / "openapi.json"
        document.write_bytes(httpx.get(f"{base_url}/schema/openapi.json", timeout=30).content)
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # ruff
        done = subprocess.run(
            [GENERATOR, "generate", "--path", str(document), "--output-path", str(tmp_path / PACKAGE),
             "--meta", "none"],
            env={**os.environ, "PATH": path}, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr  # nothing skipped
        sys.path.insert(0, str(tmp_path))
        try:
            yield base_url, _module("")
        finally:
            sys.path.remove(str(tmp_path))
            for name in [name for name in sys.modules if name.startswith(PACKAGE)]:
                del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}{name}")


def test_a_generated_client_registers_logs_in_creates_a_key_and_reads_with_it(
    generated: tuple[str, Any],
) -> None:
    base_url, client_package = generated
    auth, keys, users = (_module(f".api.{group}") for group in ("auth", "api_keys", "users"))
    for operation in ("register", "login"):
        importlib.import_module(f"{auth.__name__}.{operation}")
    for operation in ("create_api_key", "list_api_keys"):
        importlib.import_module(f"{keys.__name__}.{operation}")
    importlib.import_module(f"{users.__name__}.get_me")
    models = _module(".models")
    anonymous = client_package.Client(base_url=base_url)

    registered = auth.register.sync_detailed(
        client=anonymous,
        body=models.RegisterUser(username="carol", email="carol@example.com", password="Correct-Horse-9"),
    )
    assert registered.status_code == 201 and isinstance(registered.parsed, models.OneUserOut)
    assert registered.parsed.data.username == "carol" and registered.headers["ETag"] == '"1"'

    tokens = auth.login.sync(
        client=anonymous, body=models.Login(username="carol", password="Correct-Horse-9")
    )
    assert isinstance(tokens, models.OneTokenPair) and tokens.data.token_type == "bearer"
    with_token = client_package.AuthenticatedClient(base_url=base_url, token=tokens.data.access_token)

    scopes = models.CreateApiKeyPermissions.from_dict({"users:read": True, "api_keys:read": True})
    created = keys.create_api_key.sync(
        client=with_token, body=models.CreateApiKey(name="laptop", permissions=scopes)
    )
    assert isinstance(created, models.OneNewApiKeyOut) and created.data.key.startswith("llk_")

    with_key = client_package.AuthenticatedClient(
        base_url=base_url, token=created.data.key, prefix="", auth_header_name="X-API-Key"
    )
    me = users.get_me.sync(client=with_key)
    assert isinstance(me, models.OneUserOut) and me.data.username == "carol"
    listed = keys.list_api_keys.sync(client=with_key)
    assert isinstance(listed, models.ManyApiKeyOut)
    assert [key.name for key in listed.data] == ["laptop"] and listed.data[0].permissions.to_dict() == {
        "api_keys:read": True,
        "users:read": True,
    }

    refused = users.get_me.sync(client=anonymous)  # a problem, typed as the document says
    assert isinstance(refused, models.Problem) and refused.status == 401
    beyond = keys.create_api_key.sync(
        client=with_key,
        body=models.CreateApiKey(
            name="more", permissions=models.CreateApiKeyPermissions.from_dict({"users:write": True})
        ),
    )
    assert isinstance(beyond, models.Problem) and beyond.status == 403
