"""Google API errors for the Gemini and Vertex mocks: `{"error": {code, message, status, details}}`, worded
as the real APIs word them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    429: "You exceeded your current quota, please check your plan and billing details. For more information "
    "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


class GoogleError(Exception):
    """One error response: the HTTP status and Google's error body."""

    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        details: Sequence[dict[str, Any]] = (),
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.details = list(details)
        self.headers = headers

    def body(self) -> bytes:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return orjson.dumps({"error": error}, option=orjson.OPT_INDENT_2)


def invalid(message: str, field: str | None = None) -> GoogleError:
    """400 INVALID_ARGUMENT; with `field`, a BadRequest detail naming it, as the API adds for field errors."""
    details = [{"@type": _BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]}]
    return GoogleError(400, message, details=details if field is not None else ())


def request_field(request: str, path: str, problem: str) -> GoogleError:
    """A semantic check on one field: `* GenerateContentRequest.contents: contents is not specified`."""
    return invalid(f"* {request}.{path}: {problem}\n")


def unknown_field(name: str, path: str) -> GoogleError:
    where = f" at '{path}'" if path else ""
    return invalid(f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.', path)


def invalid_value(path: str, kind: str, value: Any) -> GoogleError:
    shown = orjson.dumps(value).decode() if not isinstance(value, dict | list) else "<object>"
    return invalid(f"Invalid value at '{path}' ({kind}), {shown}", path)


def key_invalid() -> GoogleError:
    details: list[dict[str, Any]] = [
        {
            "@type": _ERROR_INFO,
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
            "locale": "en-US",
            "message": "API key not valid. Please pass a valid API key.",
        },
    ]
    return GoogleError(400, "API key not valid. Please pass a valid API key.", details=details)


def key_missing() -> GoogleError:
    return GoogleError(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). Please use API "
        "Key or other form of API consumer identity to call this API.",
    )


def unauthenticated() -> GoogleError:
    """Vertex AI without a valid OAuth access token."""
    return GoogleError(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
        "other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        details=[
            {"@type": _ERROR_INFO, "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED", "domain": "googleapis.com"}
        ],
    )


def failure(status: int, message: str | None, retry_delay: str | None) -> GoogleError:
    """An injected failure; a 429 carries RetryInfo (the API sends no Retry-After header)."""
    details: list[dict[str, Any]] = []
    if retry_delay is not None:
        details.append({"@type": RETRY_INFO, "retryDelay": retry_delay})
    text = message or DEFAULT_MESSAGES.get(status, "mock failure")
    return GoogleError(status, text, details=details)
