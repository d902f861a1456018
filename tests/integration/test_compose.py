"""docker-compose.yml agrees with the CLI (no Docker engine runs here, so it is read, not run)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from ledgerline.cli import cli
from ledgerline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_their_order() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "db-init", "api", "projector"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["db-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "projector"):
        assert services[name]["depends_on"]["db-init"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["LEDGERLINE_DATABASE_URL"].startswith("postgresql://")
        assert "LEDGERLINE_SECRET_KEY" in services[name]["environment"]
    assert services["api"]["deploy"]["replicas"] == 2
    assert "/health" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["projector"]["stop_signal"] == "SIGTERM"


def test_db_init_runs_as_the_owner_and_the_services_as_the_runtime_role() -> None:
    services = compose()["services"]

    def settings(name: str) -> Settings:  # the secret is interpolated by compose, not read here
        environment = services[name]["environment"]
        return Settings.from_env({k: v for k, v in environment.items() if k != "LEDGERLINE_SECRET_KEY"})

    init = settings("db-init")
    assert init.owner_database is not None and init.owner_database.role == "ledgerline"
    for name in ("api", "projector"):
        assert "LEDGERLINE_OWNER_DATABASE_URL" not in services[name]["environment"]
        assert settings(name).database == init.database
    assert init.database.role == "ledgerline_app"
    created = compose()["configs"]["runtime-role"]["content"]
    assert "CREATE ROLE ledgerline_app LOGIN" in created and "NOSUPERUSER" in created
    assert services["postgres"]["configs"][0]["target"].startswith("/docker-entrypoint-initdb.d/")


def test_every_service_command_is_a_real_cli_command() -> None:
    runner = CliRunner()
    for name, service in compose()["services"].items():
        if name == "postgres":
            continue
        result = runner.invoke(cli, [*service["command"], "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_the_image_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["ledgerline"]' in dockerfile
    for package in ("domain", "eventstore", "projections", "api", "ledgerline"):
        assert f"COPY {package} {package}" in dockerfile
