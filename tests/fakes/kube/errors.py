"""API errors and the `Status` bodies they become."""
from __future__ import annotations

from typing import Mapping

from .resources import ResourceType

# Reasons the API server puts in Status bodies, by HTTP code.
REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
class ApiError(Exception):
    """Becomes a `Status` body with `code`; raised anywhere inside request handling."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.headers = dict(headers or {})

    def status(self) -> dict:
        return status_body(self.code, self.message, self.reason, self.details)


def status_body(code: int, message: str, reason: str | None = None, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason or REASONS.get(code, "Unknown")}
    if details:
        body["details"] = details
    body["code"] = code
    return body


def _not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{rt.qualified} "{name}" not found', "NotFound",
                    {"name": name, "group": rt.group, "kind": rt.plural})


def _conflict(rt: ResourceType, name: str, why: str = "the object has been modified; please apply your changes "
                                                      "to the latest version and try again") -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}', "Conflict",
                    {"name": name, "group": rt.group, "kind": rt.plural})


def _invalid(rt: ResourceType, name: str, field_path: str, why: str) -> ApiError:
    return ApiError(422, f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {field_path}: {why}', "Invalid",
                    {"name": name, "group": rt.group, "kind": rt.kind,
                     "causes": [{"reason": "FieldValueInvalid", "message": why, "field": field_path}]})
