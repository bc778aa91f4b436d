"""One error hierarchy, one table, one rendering: every refusal is an OpenAI-shaped error with a code."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import orjson

# code → (HTTP status, OpenAI error type)
ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "content_blocked": (400, "invalid_request_error"),
    "invalid_api_key": (401, "authentication_error"),
    "budget_exceeded": (402, "insufficient_quota"),
    "model_not_allowed": (403, "permission_error"),
    "forbidden": (403, "permission_error"),
    "llm_not_found": (404, "not_found_error"),
    "not_found": (404, "not_found_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "conflict": (409, "invalid_request_error"),
    "request_too_large": (413, "invalid_request_error"),
    "rate_limit_exceeded": (429, "rate_limit_error"),
    "internal_error": (500, "server_error"),
    "not_implemented": (501, "not_implemented_error"),
    "vendor_not_supported": (501, "not_implemented_error"),
    "upstream_error": (502, "upstream_error"),
    "not_ready": (503, "server_error"),
    "filter_unavailable": (503, "server_error"),
    "no_healthy_targets": (503, "server_error"),
    "upstream_timeout": (504, "upstream_error"),
}


class TollgateError(Exception):
    code = "internal_error"
    content_type = "application/json"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return ERRORS[self.code][0]

    @property
    def type(self) -> str:
        return ERRORS[self.code][1]

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "code": self.code, "param": None}
        return orjson.dumps({"error": error})


class InternalError(TollgateError):
    code = "internal_error"


class NotImplementedYet(TollgateError):
    code = "not_implemented"


class InvalidRequest(TollgateError):
    code = "invalid_request"


class InvalidApiKey(TollgateError):
    code = "invalid_api_key"


class NoHealthyTargets(TollgateError):
    """Every target of a route cools down (with Retry-After: until the first is back)."""

    code = "no_healthy_targets"


class ModelNotAllowed(TollgateError):
    code = "model_not_allowed"


class Forbidden(TollgateError):
    code = "forbidden"


class ContentBlocked(TollgateError):
    """A filter refused the request or the answer; `filter` is its name (recorded in analytics)."""

    code = "content_blocked"

    def __init__(self, filter: str, reason: str = "") -> None:
        message = f"blocked by filter '{filter}'" + (f": {reason}" if reason else "")
        super().__init__(message)
        self.filter = filter


class FilterUnavailable(TollgateError):
    """A fail-closed plugin filter is down or slower than its deadline."""

    code = "filter_unavailable"

    def __init__(self, filter: str, reason: str) -> None:
        super().__init__(f"filter '{filter}' is unavailable ({reason}); the request was not sent")
        self.filter = filter


class RateLimited(TollgateError):
    code = "rate_limit_exceeded"


class BudgetExceeded(TollgateError):
    code = "budget_exceeded"


class LlmNotFound(TollgateError):
    code = "llm_not_found"


class NotFound(TollgateError):
    code = "not_found"


class MethodNotAllowed(TollgateError):
    code = "method_not_allowed"


class ConflictError(TollgateError):
    code = "conflict"


class RequestTooLarge(TollgateError):
    code = "request_too_large"


class VendorNotSupported(TollgateError):
    code = "vendor_not_supported"


class UpstreamUnavailable(TollgateError):
    code = "upstream_error"


class UpstreamTimeout(TollgateError):
    code = "upstream_timeout"


class NotReady(TollgateError):
    code = "not_ready"


class UpstreamStatus(TollgateError):
    """An upstream's own 4xx/5xx, passed on with its status (and the upstream's code when it has one)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        super().__init__(message, headers=headers)
        self.raw = raw  # a native error body passed through as is (/proxy/), already scrubbed
        self.content_type = content_type
        self._status = status
        self._type = type or ("server_error" if status >= 500 else "invalid_request_error")
        self.code = code or "upstream_error"
        self.param = param

    @property
    def status(self) -> int:
        return self._status

    @property
    def type(self) -> str:
        return self._type

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        error = {"message": self.message, "type": self.type, "code": self.code, "param": self.param}
        return orjson.dumps({"error": error})


def retry_after(value: str) -> str | None:
    """An upstream's Retry-After as whole seconds (rounded up), whether it sent seconds, a fraction or an
    HTTP date; None when it cannot be read."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return str(max(0, math.ceil(seconds)))
