"""The lab's HTTP API (``chaoslab serve``): faults and experiment runs over the same playbooks and runner.

Every operation needs ``Authorization: Bearer <lab_api_token>`` (the lab's secrets file); the OpenAPI
document and its interactive page (``/docs``, served with local assets: no CDN) do not. Each request is
logged as one JSON line (when, client, token ok or not, method, path, status) into ``.lab/<lab>/api.log``.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from chaoslab.api_ops import LabOperations, RequestError

# Values reach Ansible as extra variables, which it templates: nothing that looks like a template gets through,
# and targets are inventory patterns made of these characters only.
TEMPLATE_MARKS = ("{{", "{%", "{#")
PATTERN = re.compile(r"[A-Za-z0-9_.\-\[\]:!&*,]+")


class FaultRequest(BaseModel):
    target: str | None = Field(None, description="Inventory pattern (default: the fault's own default target)",
                               examples=["redis"])
    duration: str = Field(..., description="How long the fault stays (a duration with unit, at most 1h)",
                          examples=["30s"])
    params: dict[str, str | int | float] = Field(default_factory=dict, examples=[{"delay": "200ms"}],
                                                 description="The fault's parameters (GET /faults lists them)")


class RunRequest(BaseModel):
    scenario: str = Field(..., description="A scenario file in experiments/", examples=["network-delay.yml"])


def _safe(values: list[object]) -> None:
    for value in values:
        if isinstance(value, str) and any(mark in value for mark in TEMPLATE_MARKS):
            raise RequestError(f"'{value}' looks like a template; values are plain text", 422)


def create_app(operations: LabOperations, token: str, log_path: Path) -> FastAPI:
    app = FastAPI(title="celery-chaos-lab", version="1", docs_url=None, redoc_url=None,
                  description="Faults and experiment runs on the lab, through the same fault playbooks and runner "
                              "a user runs. Authorize with the lab's API token (lab_api_token in the secrets file).")
    bearer = HTTPBearer(auto_error=False)
    assets = Path(__import__("fastapi_offline").__file__).parent / "static"  # Swagger UI's files, no CDN
    app.mount("/assets", StaticFiles(directory=assets), name="assets")

    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.time()
        response = await call_next(request)
        header = request.headers.get("authorization", "")
        record = {"t": started, "client": request.client.host if request.client else None,
                  "token": "valid" if header == f"Bearer {token}" else ("invalid" if header else "none"),
                  "method": request.method, "path": request.url.path, "status": response.status_code,
                  "seconds": round(time.time() - started, 3)}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        return response

    @app.exception_handler(RequestError)
    async def refused(_request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

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
        _safe([fault, body.target, body.duration, *body.params.values()])
        if body.target is not None and not PATTERN.fullmatch(body.target):
            raise RequestError(f"{fault}: target '{body.target}' is not an inventory pattern", 422)
        return {"fault": fault, "nodes": operations.start_fault(fault, body.target, dict(body.params),
                                                                  body.duration)}

    @app.get("/faults/active", dependencies=auth, summary="Faults active on the lab's nodes, with deadlines")
    def active() -> list[dict[str, Any]]:
        return operations.active_faults()

    @app.delete("/faults/{node}/{fault}", dependencies=auth, status_code=204, summary="Revert one fault")
    def revert_one(node: str, fault: str) -> Response:
        _safe([node, fault])
        operations.revert(node, fault)
        return Response(status_code=204)

    @app.delete("/faults", dependencies=auth, status_code=204, summary="Revert every fault on every node")
    def revert_all() -> Response:
        operations.revert()
        return Response(status_code=204)

    @app.post("/runs", dependencies=auth, status_code=201, summary="Start an experiment run")
    def start_run(body: RunRequest) -> dict[str, Any]:
        _safe([body.scenario])
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
