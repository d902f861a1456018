"""Two real API processes on one PostgreSQL: what one process writes (a revocation, an erasure, a
login) is seen by the other from the next request on, usage counted in both adds up exactly, and
client addresses come from the TCP peer."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from domain.users import User
from ledgerline.bootstrap import Components, build
from tests.api.processes import LEDGERLINE, free_port, serving, wait_for_health
from tests.api.test_credential_races import GRACE, race_revocations
from tests.conftest import TEST_SECRET, settings_for

PASSWORD = "Correct-Horse-9"
__all__ = ["LEDGERLINE", "PASSWORD", "free_port", "wait_for_health"]  # used by the workers' tests


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra environment for the servers of ``two_servers`` (a test may override it)."""
    return {}


@pytest.fixture
def two_servers(
    pg_database: str, tmp_path: Path, server_env: dict[str, str]
) -> Iterator[tuple[list[str], list[subprocess.Popen[bytes]]]]:
    build(settings_for(pg_database, tmp_path), init=True).close()
    with serving(pg_database, tmp_path, 2, server_env) as servers:
        yield servers


def test_revocation_in_one_process_is_seen_by_the_other_within_a_second(
    two_servers: tuple[list[str], list[subprocess.Popen[bytes]]], pg_database: str, tmp_path: Path
) -> None:
    (first, second), _ = two_servers
    components = build(settings_for(pg_database, tmp_path))
    try:
        owner = components.identity.register_user(username="alice", email="a@example.com", password=PASSWORD)
        key = components.identity.issue_api_key(owner.id, name="k", permissions={"api_keys:write": True}).key
        key_id = components.identity.verify_api_key(key).key_id
    finally:
        components.close()
    headers = {"X-API-Key": key}
    with httpx.Client(timeout=5) as client:
        assert client.get(f"{second}/api/v1/users/me", headers=headers).status_code == 200  # cached there
        assert client.post(f"{first}/api/v1/api-keys/{key_id}/revoke", headers=headers).status_code == 200
        revoked_at = time.monotonic()
        while client.get(f"{second}/api/v1/users/me", headers=headers).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0, "the other process still accepts the revoked key"
            time.sleep(0.02)


def test_usage_counts_are_exact_across_processes(
    two_servers: tuple[list[str], list[subprocess.Popen[bytes]]], pg_database: str, tmp_path: Path
) -> None:
    urls, processes = two_servers
    components = build(settings_for(pg_database, tmp_path))
    try:
        owner = components.identity.register_user(username="alice", email="a@example.com", password=PASSWORD)
        issued = components.identity.issue_api_key(owner.id, name="k", permissions={"users:read": True})
        with httpx.Client(timeout=5) as client:
            for n in range(1000):
                response = client.get(f"{urls[n % 2]}/api/v1/users/me", headers={"X-API-Key": issued.key})
                assert response.status_code == 200
        for process in processes:  # graceful shutdown flushes what each process counted
            process.send_signal(signal.SIGTERM)
        for process in processes:  # uvicorn ends by re-raising SIGTERM once shutdown is complete
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert components.identity.get_api_key(issued.result.id).usage_count == 1000
    finally:
        components.close()


@pytest.fixture
def store(pg_database: str, tmp_path: Path) -> Iterator[Components]:
    components = build(settings_for(pg_database, tmp_path, LEDGERLINE_POOL_SIZE="3"))
    try:
        yield components
    finally:
        components.close()


@pytest.fixture
def projector(pg_database: str, tmp_path: Path) -> Iterator[None]:
    """`ledgerline project` beside the servers (their history and lists read the read side)."""
    env = {**os.environ, "LEDGERLINE_DATABASE_URL": pg_database, "LEDGERLINE_SECRET_KEY": TEST_SECRET,
           "LEDGERLINE_DATA_DIR": str(tmp_path), "LEDGERLINE_POOL_SIZE": "3"}  # fmt: skip
    log = (tmp_path / "project.log").open("wb")
    process = subprocess.Popen([LEDGERLINE, "project"], env=env, stdout=log, stderr=log)
    try:
        yield
    finally:
        process.kill()
        process.wait(timeout=10)


def admin_key(store: Components) -> str:
    admin = store.identity.register_user(
        username="root", email="root@example.com", password=PASSWORD, is_superuser=True
    )
    return store.identity.issue_api_key(admin.id, name="admin", permissions={"*": True}).key


def test_an_erasure_through_one_process_shows_at_once_in_the_other(
    two_servers: tuple[list[str], list[subprocess.Popen[bytes]]], store: Components, projector: None
) -> None:
    (first, second), _ = two_servers
    admin = {"X-API-Key": admin_key(store)}
    with httpx.Client(timeout=10, headers=admin) as client:
        for n in range(20):
            created = client.post(
                f"{first}/api/v1/users",
                json={"username": f"user{n}", "email": f"u{n}@example.com", "password": PASSWORD,
                      "full_name": f"Person {n}"},
            )  # fmt: skip
            assert created.status_code == 201, created.text
            user = f"/api/v1/users/{created.json()['data']['id']}"
            shown = client.get(f"{second}{user}").json()["data"]  # the other process caches her key
            assert (shown["email"], shown["full_name"]) == (f"u{n}@example.com", f"Person {n}")
            assert client.post(f"{first}{user}/erase").status_code == 200
            after = client.get(f"{second}{user}?include_deleted=true")
            assert after.status_code == 200, after.text
            assert (after.json()["data"]["email"], after.json()["data"]["full_name"]) == (
                "[erased]",
                "[erased]",
            )
            history = client.get(f"{second}{user}/history")
            assert history.status_code == 200, history.text
            assert f"u{n}@example.com" not in history.text and f"Person {n}" not in history.text


@pytest.mark.parametrize("server_env", [{"LEDGERLINE_LOGIN_RATE_LIMIT": "0"}])
def test_a_token_from_a_login_through_one_process_works_at_once_in_the_other(
    two_servers: tuple[list[str], list[subprocess.Popen[bytes]]], store: Components
) -> None:
    (first, second), _ = two_servers
    store.identity.register_user(username="alice", email="a@example.com", password=PASSWORD)
    refused = []
    with httpx.Client(timeout=10) as client:
        for n in range(50):
            here, there = (first, second) if n % 2 == 0 else (second, first)
            pair = client.post(f"{here}/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
            assert pair.status_code == 200, pair.text
            bearer = {"Authorization": f"Bearer {pair.json()['data']['access_token']}"}
            answer = client.get(f"{there}/api/v1/users/me", headers=bearer)
            if answer.status_code != 200:
                refused.append((n, answer.status_code, answer.text))
            if n % 10 == 9:  # a password change between logins: later tokens must still work
                new = f"Correct-Horse-{n}"
                changed = client.post(
                    f"{there}/api/v1/users/me/change-password",
                    json={"current_password": PASSWORD, "new_password": new},
                    headers=bearer,
                )
                assert changed.status_code == 200, changed.text
                assert client.get(f"{here}/api/v1/users/me", headers=bearer).status_code == 401
                store.identity.reset_password(store.identity.find_user_id("alice"), PASSWORD)  # type: ignore[arg-type]
    assert refused == []


def test_a_key_revoked_in_one_process_while_its_first_uses_are_in_flight_in_both(
    two_servers: tuple[list[str], list[subprocess.Popen[bytes]]], store: Components
) -> None:
    urls, _ = two_servers
    owner = store.identity.register_user(username="alice", email="a@example.com", password=PASSWORD)

    def issue() -> tuple[str, str]:
        issued = store.identity.issue_api_key(
            owner.id, name=f"k{uuid4().hex}", permissions={"users:read": True}
        )
        return issued.key, str(issued.result.id)

    def revoke(key_id: str) -> None:
        with httpx.Client(timeout=10) as client:
            answer = client.post(f"{urls[0]}/api/v1/api-keys/{key_id}/revoke", headers={"X-API-Key": admin})
        assert answer.status_code == 200, answer.text

    def use(n: int, key: str) -> int:
        with httpx.Client(timeout=10) as client:  # one connection per use: threads share no client
            return client.get(f"{urls[n % 2]}/api/v1/users/me", headers={"X-API-Key": key}).status_code

    admin = admin_key(store)
    late = race_revocations(issue, revoke, use)
    assert [t for t in late if t > GRACE] == [], "a revoked key was accepted after the contract's second"
    assert late == [], f"accepted {len(late)} times after the revoke answered (at most {max(late):.3f} s)"


def test_forwarded_for_from_an_untrusted_peer_is_neither_recorded_nor_a_fresh_budget(
    two_servers: tuple[list[str], list[subprocess.Popen[bytes]]], store: Components
) -> None:
    """No LEDGERLINE_TRUSTED_PROXIES (the default): loopback is not trusted either."""
    (url, _), _ = two_servers
    alice = store.identity.register_user(username="alice", email="a@example.com", password=PASSWORD)
    with httpx.Client(base_url=url, timeout=10) as client:
        forged = {"X-Forwarded-For": "203.0.113.66"}
        ok = client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}, headers=forged
        )
        assert ok.status_code == 200, ok.text
        logged_in = [e for e in store.identity.events.get(alice.id) if isinstance(e, User.LoggedIn)][-1]
        assert logged_in.audit.ip_address is not None
        assert logged_in.audit.ip_address.value == "127.0.0.1"  # the peer, not the forged address
        assert store.identity.get_user(alice.id).last_login_ip.value == "127.0.0.1"  # type: ignore[union-attr]
        statuses = [
            client.post(
                "/api/v1/auth/login",
                json={"username": f"nobody{n}", "password": "x"},
                headers={"X-Forwarded-For": f"198.51.100.{n}"},  # a new "client" each time
            ).status_code
            for n in range(12)
        ]
    assert statuses[:9] == [401] * 9 and statuses[-1] == 429, statuses  # one budget: the peer's


@pytest.mark.parametrize("server_env", [{"LEDGERLINE_TRUSTED_PROXIES": "127.0.0.1/32"}])
def test_behind_a_trusted_proxy_each_client_counts_but_spellings_of_one_account_share_a_budget(
    two_servers: tuple[list[str], list[subprocess.Popen[bytes]]], store: Components
) -> None:
    (url, _), _ = two_servers
    alice = store.identity.register_user(username="alice", email="alice@example.com", password=PASSWORD)
    spellings = [
        "alice@example.com",
        " Alice@Example.COM",
        "ALICE@EXAMPLE.COM ",
        "\talice@example.COM",
        "Alice",
    ]
    with httpx.Client(base_url=url, timeout=10) as client:
        ok = client.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.66"},
        )
        assert ok.status_code == 200, ok.text
        assert store.identity.get_user(alice.id).last_login_ip.value == "203.0.113.66"  # type: ignore[union-attr]
        statuses = [
            client.post(
                "/api/v1/auth/login",
                json={"username": spellings[n % len(spellings)], "password": "Wrong-Horse-1"},
                headers={"X-Forwarded-For": f"198.51.100.{n}"},  # a new client each time
            ).status_code
            for n in range(10)
        ]
    assert statuses[:9] == [401] * 9 and statuses[-1] == 429, statuses  # alice's budget, however spelt
