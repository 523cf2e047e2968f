"""Swagger UI at ``/docs`` and ReDoc at ``/redoc``, from files shipped inside this package.

FastAPI's built-in pages load their JavaScript and CSS from cdn.jsdelivr.net, the favicon from
fastapi.tiangolo.com and ReDoc's fonts from Google, so in an air-gapped cluster they are blank.
These routes are FastAPI's documented self-hosting pattern instead: the app is built with
``docs_url=None, redoc_url=None`` and :func:`install_docs` serves pinned Swagger UI 5 and ReDoc 2
(``service/api/static/docs/``, versions and SHA-256 sums in its README) with local URLs only.
"""

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

#: The vendored files, and the path they are served under.
ASSETS_DIRECTORY = Path(__file__).parents[1] / "static" / "docs"
ASSETS_PATH = "/static/docs"

#: Swagger UI options on top of FastAPI's defaults. validatorUrl=None: Swagger UI would otherwise
#: show a badge image fetched from validator.swagger.io whenever the page is not on localhost.
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    """The path prefix a proxy mounted the app under (``root_path``), as FastAPI's own docs routes use it."""
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/")


def _openapi_url(request: Request) -> str:
    """Where the page fetches the OpenAPI document from."""
    app: FastAPI = request.app
    return _root(request) + (app.openapi_url or "")


@router.get("/")
async def root(request: Request) -> RedirectResponse:
    """The service's address leads to its manual: 307 to /docs (temporary, so no browser keeps it for good)."""
    return RedirectResponse(_root(request) + "/docs", status_code=307)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI, with every asset from this server."""
    assets = _root(request) + ASSETS_PATH
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc, with every asset from this server and the system fonts instead of Google's."""
    assets = _root(request) + ASSETS_PATH
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{assets}/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/favicon.png",
        with_google_fonts=False,
    )


def install_docs(app: FastAPI) -> None:
    """Serve the vendored assets, the two documentation pages and ``/`` leading to them (none is in the document)."""
    if app.openapi_url is None:  # no document, nothing to show
        return
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIRECTORY), name="docs-assets")
    app.include_router(router)
