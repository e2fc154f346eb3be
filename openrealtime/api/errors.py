"""Every HTTP error leaves in OpenAI's shape: {"error": {message, type, param, code}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..protocol.errors import ProtocolError, pydantic_error_to_protocol

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = ProtocolError(message, code=code, param=param, type=type)
        self.headers = headers

    @classmethod
    def from_protocol(cls, exc: ProtocolError, status: int = 400) -> "ApiError":
        err = cls(status, exc.message, code=exc.code, param=exc.param, type=exc.type)
        return err


def error_response(status: int, error: ProtocolError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.http_body(), status_code=status, headers=headers)


_STATUS_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error",
                 413: "invalid_request_error", 415: "invalid_request_error", 429: "rate_limit_exceeded",
                 503: "server_error"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.headers)

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_: Request, exc: ProtocolError) -> JSONResponse:
        return error_response(400, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = pydantic_error_to_protocol(exc)
        return error_response(400, err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        if exc.status_code == 404:
            message = "Not found. See /docs for the available routes."
        err = ProtocolError(message, code=None, type=_STATUS_TYPES.get(exc.status_code, "invalid_request_error"))
        return error_response(exc.status_code, err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        err = ProtocolError("The server had an error while processing your request. The error was logged; "
                            "retry, and report it if it persists.", code="internal_error", type="server_error")
        return error_response(500, err)
