"""/docs and /redoc work offline: local assets only, all of them served, pinned and checksummed.

The browser test (tests/browser/test_docs_in_chromium.py) renders the pages with every
non-loopback request blocked; these tests check the same promise without a browser.
"""

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from in_process import started_client

from service.api.operations.docs import ASSETS_DIRECTORY

pytestmark = pytest.mark.anyio

SWAGGER_ASSETS = {"/static/docs/swagger-ui.css", "/static/docs/favicon.png", "/static/docs/swagger-ui-bundle.js"}
REDOC_ASSETS = {"/static/docs/favicon.png", "/static/docs/redoc.standalone.js"}
PAGES = {"/docs": SWAGGER_ASSETS | {"/openapi.json"}, "/redoc": REDOC_ASSETS | {"/openapi.json"}}
CONTENT_TYPES = {".js": {"text/javascript", "application/javascript"}, ".css": {"text/css"}, ".png": {"image/png"}}


class _References(HTMLParser):
    """Every URL a page loads: src and href attributes, ReDoc's spec-url and Swagger UI's `url: '...'`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.update(value for name, value in attrs if name in {"src", "href", "spec-url"} and value)

    def handle_data(self, data: str) -> None:
        self.urls.update(re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", data))


def _references(html: str) -> set[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", PAGES)
async def test_docs_page_names_no_external_url(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?:|//[a-z0-9]", response.text, re.IGNORECASE), response.text


@pytest.mark.parametrize(("page", "expected"), PAGES.items())
async def test_docs_page_loads_exactly_its_local_assets(
    client: httpx.AsyncClient, page: str, expected: set[str]
) -> None:
    html = (await client.get(page)).text

    assert _references(html) == expected


@pytest.mark.parametrize("asset", sorted(SWAGGER_ASSETS | REDOC_ASSETS))
async def test_every_docs_asset_answers_with_its_file(client: httpx.AsyncClient, asset: str) -> None:
    response = await client.get(asset)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] in CONTENT_TYPES[Path(asset).suffix]
    assert response.content == (ASSETS_DIRECTORY / Path(asset).name).read_bytes()


async def test_docs_assets_follow_the_proxy_prefix(app: FastAPI) -> None:
    # Behind a proxy that mounts the app at /xent, the pages must point under /xent too.
    async with started_client(app, root_path="/xent") as proxied:
        html = (await proxied.get("/xent/docs")).text
        css = await proxied.get("/xent/static/docs/swagger-ui.css")

    assert _references(html) == {f"/xent{url}" for url in PAGES["/docs"]}
    assert css.status_code == 200, css.text


async def test_docs_pages_are_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    assert [path for path in paths if path.startswith(("/docs", "/redoc", "/static"))] == []
    assert {"/v1/cross-entropy", "/v1/binary-cross-entropy"} <= set(paths)


def test_vendored_assets_match_their_recorded_sha256() -> None:
    lines = (ASSETS_DIRECTORY / "SHA256SUMS").read_text().splitlines()
    recorded = {name: digest for digest, name in (line.split() for line in lines)}
    actual = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in ASSETS_DIRECTORY.iterdir()
        if path.name not in {"README.md", "SHA256SUMS"}
    }

    assert actual == recorded


def test_vendored_swagger_ui_is_version_5_as_recorded() -> None:
    # FastAPI writes OpenAPI 3.1, which Swagger UI 4 (what the swagger-ui-bundle package ships) cannot render.
    bundle = (ASSETS_DIRECTORY / "swagger-ui-bundle.js").read_text()
    readme = (ASSETS_DIRECTORY / "README.md").read_text()

    version = re.findall(r'PACKAGE_VERSION:"([0-9.]+)"', bundle)
    assert version == [re.findall(r"`swagger-ui-dist` \| ([0-9.]+) \|", readme)[0]]
    assert version[0].startswith("5.")
    assert re.search(r"`redoc` \| 2\.\d+\.\d+ \|", readme)


def test_vendored_redoc_no_longer_fetches_its_sidebar_logo() -> None:
    # The one change to the vendored files (see static/docs/README.md): ReDoc's logo came from its CDN.
    bundle = (ASSETS_DIRECTORY / "redoc.standalone.js").read_text()

    assert "cdn.redoc.ly" not in bundle
    assert bundle.count('alt:"redocly logo",onError:()=>t(!1),src:"data:,"') == 1
