"""Vendor → adapter. Adding a vendor is one module in providers/ and one line here."""

from __future__ import annotations

from collections.abc import Callable

from providers.base import Provider
from providers.openai import OpenAI
from providers.unavailable import Unavailable
from sync.model import Llm

ADAPTERS: dict[str, Callable[[Llm, str | None], Provider]] = {
    "openai": OpenAI,
}


def bind(llm: Llm, api_key: str | None) -> Provider:
    """The adapter for `llm`, with its base URL, credential and timeouts resolved once."""
    factory = ADAPTERS.get(llm.vendor)
    return factory(llm, api_key) if factory else Unavailable(llm.vendor, llm.slug)


def has_adapter(vendor: str) -> bool:
    return vendor in ADAPTERS
