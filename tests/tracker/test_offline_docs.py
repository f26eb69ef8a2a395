"""/api/docs works offline: its Swagger UI comes from the installed package, under the CSP
every page has, and the page names nothing outside the tracker."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_api_docs_load_only_from_the_tracker(client: TestClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert "<script>" not in page.text  # no inline script: the CSP would block it
    for asset in sources:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 200, asset
    assert client.get("/api/openapi.json").json()["info"]["title"] == "Bolt Card tracker"
