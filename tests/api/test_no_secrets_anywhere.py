"""No response body or log line carries a password, a password hash, a key secret after its
creation, a key digest or a refresh token after its issue: checked over a busy session."""

from __future__ import annotations

import logging
import re
from uuid import UUID

import pytest

from ledgerline.logs import JsonFormatter
from tests.api.conftest import PASSWORD, Api

FULL_KEY = re.compile(r"llk_[0-9A-Za-z]{49}")


def test_secrets_stay_out_of_bodies_and_logs(
    api: Api, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # the access log (api.access_log) too: written to standard error
    client, bodies = api.client, []
    created = client.post(
        "/api/v1/api-keys", json={"name": "ci", "permissions": {"users:read": True}}, headers=api.as_user()
    )
    key, key_id = created.json()["data"]["key"], created.json()["data"]["id"]
    rotated = client.post(
        f"/api/v1/api-keys/{key_id}/rotate", json={"grace_seconds": 60}, headers=api.as_user()
    )
    new_key = rotated.json()["data"]["key"]
    login = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}).json()["data"]
    bearer = {"Authorization": f"Bearer {login['access_token']}"}
    for response in (
        client.get("/api/v1/users/me", headers={"X-API-Key": key}),
        client.get("/api/v1/users/me", headers={"X-API-Key": new_key}),
        client.get("/api/v1/api-keys", headers=bearer),
        client.get(f"/api/v1/api-keys/{key_id}", headers=bearer),
        client.get("/api/v1/users", headers=api.as_admin()),
        client.post(
            "/api/v1/users/me/change-password",
            json={"current_password": PASSWORD, "new_password": "Other-Pass-2"},
            headers=bearer,
        ),
        client.post("/api/v1/auth/login", json={"username": "alice", "password": "Wrong-Pass-3"}),
        client.post("/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}),
    ):
        bodies.append(response.text)
    digests = {api.components.identity.get_api_key(UUID(key_id)).digest}
    secrets = [PASSWORD, "Other-Pass-2", "Wrong-Pass-3", "$argon2", login["refresh_token"], *digests]
    client.__exit__(None, None, None)  # the app's shutdown writes what the access log holds
    access = [line for line in capfd.readouterr().err.splitlines() if '"ledgerline.access"' in line]
    logs = [JsonFormatter().format(record) for record in caplog.records] + access
    assert access, "the access log wrote a line per request"
    for text in bodies + logs:
        for secret in secrets:
            assert secret not in text
        assert not FULL_KEY.search(text)
    assert any('"request_id"' in line for line in logs)  # log lines carry the request id
