"""What every adapter's error mapping shares; only reading the vendor's own error body differs.

A vendor's Retry-After is kept (in whole seconds); a refusal of the gateway's own credential never shows
the vendor's message (it may quote the key) and does not look like the client's key was wrong; on
/proxy/ the native error body goes to the native client as it was, with the credential scrubbed out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from gateway.errors import UpstreamStatus, retry_after
from providers.base import Call, Operation

Scrub = Callable[[str], str]


def scrubber(*secrets: str | None) -> Scrub:
    """Replaces each of `secrets` (the upstream credential and its parts) by [REDACTED]."""
    present = tuple(s for s in secrets if s)

    def scrub(text: str) -> str:
        for secret in present:
            if secret in text:
                text = text.replace(secret, "[REDACTED]")
        return text

    return scrub


def kept_headers(headers: Mapping[str, str], fallback_wait: str | None = None) -> dict[str, str]:
    """The response headers an error keeps: Retry-After, as whole seconds."""
    value = headers.get("retry-after")
    wait = retry_after(value) if value else fallback_wait
    return {"retry-after": wait} if wait is not None else {}


def credential_refused(slug: str, status: int, kept: Mapping[str, str]) -> UpstreamStatus:
    message = f"the upstream refused the gateway's credentials for LLM '{slug}' (HTTP {status})"
    return UpstreamStatus(status, message, code="upstream_auth_error", headers=kept or None)


def native_error(
    status: int, body: bytes, headers: Mapping[str, str], kept: Mapping[str, str], scrub: Scrub
) -> UpstreamStatus:
    content_type = headers.get("content-type", "application/json")
    raw = scrub(body.decode("utf-8", "replace")).encode()
    return UpstreamStatus(status, "", headers=kept or None, raw=raw, content_type=content_type)


def common_failure(
    call: Call,
    slug: str,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    scrub: Scrub,
    *,
    auth_statuses: Iterable[int] = (401, 403),
) -> UpstreamStatus | None:
    """The answer for a credential refusal or a /proxy/ call; None when the vendor's error body must be
    read (with `kept_headers(headers)` for what to keep)."""
    kept = kept_headers(headers)
    if status in auth_statuses:
        return credential_refused(slug, status, kept)
    if call.op is Operation.PROXY:
        return native_error(status, body, headers, kept, scrub)
    return None
