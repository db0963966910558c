"""The lab's HTTP API (``chaoslab serve``): faults and experiment runs over the same playbooks and runner.

Every operation needs ``Authorization: Bearer <lab_api_token>`` (the lab's secrets file), compared in constant
time; the OpenAPI document and its interactive page (``/docs``, served with local assets: no CDN) do not. Each
request is logged as one JSON line (when, client, token ok or not, method, path, status) into
``.lab/<lab>/api.log``, which is kept below LOG_MAX_BYTES (the older half moves to ``api.log.1``); a log that cannot
be written never fails the request. A request body above BODY_MAX_BYTES is refused (413) before it is read whole.

Nothing a request carries reaches Ansible as written: every value is parsed by the closed grammar of
:mod:`chaoslab.inputs` and :mod:`chaoslab.fault_params` and passed on in canonical form, targets as the
inventory's host names; a fault, a clear or a run while the lab's lock is held is refused with 409.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from chaoslab.api.operations import LabOperations, RequestError

LOG_MAX_BYTES = 1 << 20
BODY_MAX_BYTES = 64 * 1024


class FaultRequest(BaseModel):
    target: str | None = Field(None, description="Inventory pattern (default: the fault's own default target)",
                               examples=["redis"])
    duration: str = Field(..., description="How long the fault stays (a duration with unit, at most 1h)",
                          examples=["30s"])
    params: dict[str, str | int | float] = Field(default_factory=dict, examples=[{"delay": "200ms"}],
                                                 description="The fault's parameters (GET /faults lists them)")


class RunRequest(BaseModel):
    scenario: str = Field(..., description="A scenario file in experiments/", examples=["network-delay.yml"])


def one_line(text: str, limit: int = 300) -> str:
    """A message as one printable line of at most *limit* characters (it may quote what the request carried)."""
    flat = "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def token_matches(header: str, token: str) -> bool:
    """Whether an Authorization header carries the bearer token (constant time, whatever the header holds)."""
    return hmac.compare_digest(header.encode("utf-8", "replace"), f"Bearer {token}".encode())


def append_log(path: Path, record: dict[str, Any]) -> None:
    """One JSON line; the file is kept below LOG_MAX_BYTES (its older part moves to <log>.1). Never raises."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size >= LOG_MAX_BYTES:
            path.replace(path.with_name(path.name + ".1"))
        with path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
    except OSError:
        pass


class BodyLimit:
    """ASGI middleware: a request whose body is above *limit* bytes gets 413 before the body is read whole."""

    def __init__(self, app: Any, limit: int = BODY_MAX_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    @staticmethod
    async def _refuse(send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        body = json.dumps({"detail": f"the request body is above {BODY_MAX_BYTES} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(operations: LabOperations, token: str, log_path: Path) -> FastAPI:
    app = FastAPI(title="celery-chaos-lab", version="1", docs_url=None, redoc_url=None,
                  description="Faults and experiment runs on the lab, through the same fault playbooks and runner "
                              "a user runs. Authorize with the lab's API token (lab_api_token in the secrets file).")
    app.add_middleware(BodyLimit)
    bearer = HTTPBearer(auto_error=False)
    assets = Path(__import__("fastapi_offline").__file__).parent / "static"  # Swagger UI's files, no CDN
    app.mount("/assets", StaticFiles(directory=assets), name="assets")

    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode()):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.time()
        response = await call_next(request)
        header = request.headers.get("authorization", "")
        record = {"t": started, "client": request.client.host if request.client else None,
                  "token": "valid" if token_matches(header, token) else ("invalid" if header else "none"),
                  "method": request.method, "path": request.url.path[:200], "status": response.status_code,
                  "seconds": round(time.time() - started, 3)}
        append_log(log_path, record)
        return response

    @app.exception_handler(RequestError)
    async def refused(_request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": one_line(str(error))}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return JSONResponse({"detail": one_line(f"{where}: {first.get('msg', 'not a valid request')}")},
                            status_code=422)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="celery-chaos-lab API",
                                   swagger_js_url="/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/assets/swagger-ui.css",
                                   swagger_favicon_url="/assets/favicon.png")

    auth = [Depends(authorized)]

    @app.get("/faults", dependencies=auth, summary="Fault kinds and their parameters")
    def fault_kinds() -> list[dict[str, Any]]:
        return operations.fault_kinds()

    @app.post("/faults/{fault}", dependencies=auth, status_code=201, summary="Start a fault")
    def start_fault(fault: str, body: FaultRequest) -> dict[str, Any]:
        return {"fault": fault, "nodes": operations.start_fault(fault, body.target, dict(body.params),
                                                                  body.duration)}

    @app.get("/faults/active", dependencies=auth, summary="Faults active on the lab's nodes, with deadlines")
    def active() -> list[dict[str, Any]]:
        return operations.active_faults()

    @app.delete("/faults/{node}/{fault}", dependencies=auth, status_code=204, summary="Revert one fault")
    def revert_one(node: str, fault: str) -> Response:
        operations.revert(node, fault)
        return Response(status_code=204)

    @app.delete("/faults", dependencies=auth, status_code=204, summary="Revert every fault on every node")
    def revert_all() -> Response:
        operations.revert()
        return Response(status_code=204)

    @app.post("/runs", dependencies=auth, status_code=201, summary="Start an experiment run")
    def start_run(body: RunRequest) -> dict[str, Any]:
        return operations.start_run(body.scenario)

    @app.get("/runs", dependencies=auth, summary="Experiment runs")
    def runs() -> list[dict[str, Any]]:
        return operations.list_runs()

    @app.get("/runs/{run_id}", dependencies=auth, summary="A run's status and summary")
    def run(run_id: str) -> dict[str, Any]:
        return operations.run(run_id)

    @app.get("/runs/{run_id}/report", dependencies=auth, summary="A run's HTML report", response_class=FileResponse)
    def report(run_id: str) -> FileResponse:
        return FileResponse(operations.report(run_id), media_type="text/html")

    @app.delete("/runs/{run_id}", dependencies=auth, status_code=204, summary="Stop a run (its fault is reverted)")
    def stop(run_id: str) -> Response:
        operations.stop_run(run_id)
        return Response(status_code=204)

    return app
