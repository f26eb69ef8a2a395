"""``/api/docs``: the Swagger UI, served from the tracker itself so it works offline.

The assets (JavaScript and CSS) come from the ``fastapi-offline`` package, which ships a
current Swagger UI build inside its wheel; we do not keep a hand copy. FastAPI's own docs
page starts Swagger UI with an inline script, which the tracker's Content-Security-Policy
(``script-src 'self'``, the same on every page) forbids, so the page here loads a small
script of ours (static/api-docs.js) instead.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from tracker.web.templating import SECURITY_HEADERS

DOCS_PATH = "/api/docs"
ASSETS_PATH = "/api/docs/assets"

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>API · Bolt Card tracker</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script>
</body>
</html>
"""


def swagger_assets() -> Path:
    """The folder of Swagger UI files inside the installed ``fastapi_offline`` package."""
    return Path(str(resources.files("fastapi_offline") / "static"))


def install(app: FastAPI, *, openapi_url: str) -> None:
    """Serve the docs page and its assets; call with ``docs_url=None`` on the app."""
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_assets()), name="api-docs-assets")
    page = _PAGE.format(assets=ASSETS_PATH, openapi=openapi_url)

    @app.get(DOCS_PATH, include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return HTMLResponse(page, headers=SECURITY_HEADERS)
