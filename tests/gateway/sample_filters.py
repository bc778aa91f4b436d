"""`python:` filters the gateway imports in tests/gateway/test_filters.py."""

from __future__ import annotations

from typing import Any

from pipeline.sdk import FilterCall, Verdict


def tag_user(call: FilterCall) -> Verdict | None:
    """Rewrites the request: sets `user` to the app's name."""
    body: dict[str, Any] = dict(call.body)
    body["user"] = call.metadata.get("app", "") or "anonymous"
    return Verdict.rewrite(body)


async def no_pineapple(call: FilterCall) -> Verdict | None:
    """Blocks a prompt that mentions pineapple (async, to show both kinds run)."""
    if "pineapple" in str(call.body).lower():
        return Verdict.block("no fruit on pizza")
    return None


def shout(call: FilterCall) -> Verdict | None:
    """Response phase: upper-cases the answer's text, streamed or not."""
    body = call.body
    for choice in body.get("choices", []):
        for part in ("message", "delta"):
            message = choice.get(part)
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                message["content"] = message["content"].upper()
    return Verdict.rewrite(body)


def broken(call: FilterCall) -> Verdict | None:
    """A filter with a bug: its `fail` policy decides what happens to the request."""
    raise KeyError("oops")


def only_app_two(call: FilterCall) -> Verdict | None:
    """An `auth`-phase filter: it runs after the key was checked, so it knows the app."""
    if call.metadata.get("app") != "app-two":
        return Verdict.block(f"app {call.metadata.get('app')!r} is not app-two")
    return None
