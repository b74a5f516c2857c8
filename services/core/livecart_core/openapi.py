"""The served OpenAPI says what the service answers: every operation lists the refusals the
shared runtime can give it (the boundary's 400/414/431, body limits and stalls, bad tokens,
unknown ids, a dependency that is down), all with the one error body. A route declares its
own outcomes (409, 429, ...) with ``responses=``, using :data:`ERROR_BODY`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """The body of every refusal."""

    error: str = Field(description="a stable, machine-readable code such as 'not_found'")
    message: str = Field(description="what was wrong, for a person")
    detail: list[dict[str, Any]] | None = Field(
        default=None, description="validation errors: where (loc), what (type, msg)"
    )


ERROR_BODY: dict[str, Any] = {"model": ErrorBody}

# What any secured route can answer beside its own refusals.
_ANY_ROUTE: dict[int, str] = {
    400: "a malformed request, e.g. a body that is not JSON",
    401: "missing, invalid or expired token",
    403: "the token lacks the scope, or is bound to another room",
}


def refusals(**by_status: str) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: its own refusals (``_404="..."``) and those of any secured
    route (400, 401, 403), each with the error body, described for this route."""
    described = dict(_ANY_ROUTE)
    for key, text in by_status.items():
        status = int(key.lstrip("_"))
        described[status] = f"{text}; or {described[status]}" if status == 400 else text
    return {
        status: {"model": ErrorBody, "description": text}
        for status, text in sorted(described.items())
    }


_ANY = {
    "400": "The request breaks an input rule (text, numbers, ids)",
    "414": "The URL is too long",
    "431": "Too many or too large request headers",
}
_WITH_BODY = {
    "408": "The request body did not arrive in time",
    "413": "The request body is too large",
}
_WITH_PARAMETERS = {"422": "The request does not match the schema"}
_SECURED = {
    "401": "No valid access token",
    "403": "The token lacks the scope, or is bound to another room or tenant",
}
_WITH_PATH = {"404": "No such resource for this tenant"}
_REF = "#/components/schemas/ErrorBody"
# Any operation that reaches a dependency (the database, the bus) answers 503 while it is down.
_UNAVAILABLE = {
    "description": "A dependency (database, event bus) is down; retry after Retry-After seconds",
    "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": {"$ref": _REF}}},
}
_NO_DEPENDENCY = {"/healthz", "/metrics"}


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` list the runtime's refusals on every operation."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _patch(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _patch(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components["ErrorBody"] = error_schema
    # FastAPI's own 422 model is not what the runtime answers: point it at the error body.
    if "HTTPValidationError" in components:
        components["HTTPValidationError"] = {"$ref": _REF}
    for route, path in schema.get("paths", {}).items():
        for method, operation in path.items():
            if method in ("parameters", "servers", "summary", "description"):
                continue
            responses = operation.setdefault("responses", {})
            codes = dict(_ANY)
            parameters = operation.get("parameters", [])
            if "requestBody" in operation:
                codes |= _WITH_BODY | _WITH_PARAMETERS
            if parameters:
                codes |= _WITH_PARAMETERS
            if operation.get("security"):
                codes |= _SECURED
            if any(p.get("in") == "path" for p in parameters):
                codes |= _WITH_PATH
            for code, description in codes.items():
                responses.setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": _REF}}},
                    },
                )
            if route not in _NO_DEPENDENCY:
                responses.setdefault("503", _UNAVAILABLE)
