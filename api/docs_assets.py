"""The API document's pages, served by the app itself: nothing is loaded from a CDN.

Swagger UI's files come from the ``swagger-ui-py`` package (it vendors Swagger UI 5, which reads
OpenAPI 3.1) and are served under ``/schema/assets``; ``/schema`` and ``/schema/swagger`` show
the page, ``/schema/openapi.json`` is the document. Scalar and ReDoc are not offered: no package
on PyPI ships their scripts without a web framework of its own.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from litestar import Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS = "/schema/assets"


def _swagger_files() -> Path:
    """The package's static files, found without importing it (its ``__init__`` loads Jinja and
    YAML for frameworks we do not use)."""
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def openapi_config(version: str) -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
        path=["/", "/swagger"],
    )
    return OpenAPIConfig(
        title="Ledgerline",
        version=version,
        description="Users and API keys, event-sourced; the audit log is the event stream. "
        "Scopes and problem types: docs/reference.md.",
        use_handler_docstrings=True,
        render_plugins=[swagger, JsonRenderPlugin()],
    )


def docs_assets() -> Router:
    return create_static_files_router(path=ASSETS, directories=[_swagger_files()], name="docs-assets")
