"""The distribution says what it is: every package ships its type hints (PEP 561) and the
project states its licence (PEP 639)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_marked_typed_and_ships_the_marker() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = project["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = [pattern.rstrip("*") for pattern in included]
    assert sorted(top_level) == ["api", "domain", "eventstore", "ledgerline", "projections"]
    for package in top_level:  # PEP 561: the marker covers the package's subpackages too
        assert (ROOT / package / "py.typed").is_file(), package
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["*"]


def test_the_licence_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "LicenseRef-Proprietary"  # no licence in the repository
    requires = project["build-system"]["requires"]
    assert "setuptools>=77" in requires  # the first to read a licence expression
