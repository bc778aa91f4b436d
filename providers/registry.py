"""Vendor → adapter. Adding a vendor is one module in providers/ and one line here.

Adapters are imported when an LLM of their vendor is configured, not at startup: a gateway in front of
OpenAI alone never loads botocore or google-auth. A vendor whose module does not exist yet is served by
`Unavailable` (501 `vendor_not_supported`), and named in the startup warnings.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable

from providers.base import Provider
from providers.unavailable import Unavailable
from sync.model import Llm

ADAPTERS: dict[str, str] = {
    "openai": "providers.openai:OpenAI",
    "anthropic": "providers.anthropic:Anthropic",
    "google_ai": "providers.gemini:GoogleAI",
    "vertex": "providers.vertex:Vertex",
    "azure_openai": "providers.azure:AzureOpenAI",
    "bedrock": "providers.bedrock:Bedrock",
    "mistral": "providers.mistral:Mistral",
    "huggingface": "providers.huggingface:HuggingFace",
    "ollama": "providers.ollama:Ollama",
}


@functools.cache
def adapter(vendor: str) -> Callable[[Llm, str | None], Provider] | None:
    """The adapter class of `vendor`, or None while its module is not built."""
    module, _, name = ADAPTERS.get(vendor, ":").partition(":")
    if not module or importlib.util.find_spec(module) is None:
        return None
    factory: Callable[[Llm, str | None], Provider] = getattr(importlib.import_module(module), name)
    return factory


def bind(llm: Llm, api_key: str | None) -> Provider:
    """The adapter for `llm`, with its base URL, credential and timeouts resolved once."""
    factory = adapter(llm.vendor)
    return factory(llm, api_key) if factory else Unavailable(llm.vendor, llm.slug)


def has_adapter(vendor: str) -> bool:
    return adapter(vendor) is not None
