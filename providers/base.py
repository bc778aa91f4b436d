"""The vendor adapter interface: what a provider module implements and what it is given.

A provider is bound to one configured LLM (its base URL, credential and timeouts are resolved once, at
snapshot build) and translates between the client's call and the vendor's wire format both ways.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import msgspec

from gateway.errors import TollgateError


class Operation(enum.Enum):
    CHAT = "chat"
    EMBEDDINGS = "embeddings"
    MODELS = "models"
    PROXY = "proxy"


class Usage(msgspec.Struct):
    """Token counts in one convention, whatever the vendor's: `input_tokens` counts every prompt token,
    cached ones included; `cache_read_tokens` and `cache_write_tokens` are the parts of it read from and
    written to the vendor's prompt cache."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Call(msgspec.Struct, kw_only=True):
    """The client's call as the gateway understood it; the body is the client's bytes."""

    op: Operation
    body: bytes
    model: str = ""  # after default_model
    model_in_body: bool = True  # the body names `model` (else it is added for the upstream)
    model_key: bool = True  # the body has a `model` key at all (possibly null)
    stream: bool = False
    include_usage: bool = False  # the client asked for the usage chunk (stream_options.include_usage)
    has_stream_options: bool = False
    method: str = "POST"
    path: str = ""  # proxy: the path after /proxy/{llm}/
    query: str = ""  # proxy: the query string, gateway credentials removed
    headers: dict[str, str] = {}  # proxy: the client's headers that may be forwarded
    content_type: str = "application/json"


class UpstreamRequest(msgspec.Struct, frozen=True):
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


class Reply(msgspec.Struct):
    """A complete (non-streamed) answer for the client, and what it cost."""

    body: bytes
    usage: Usage | None = None
    model: str | None = None  # the model the vendor says answered


class StreamRelay(Protocol):
    """Turns the upstream's stream into the client's, chunk by chunk, and keeps the usage it carries."""

    usage: Usage | None
    model: str | None
    # Set when the upstream's stream reported a failure mid-way: the client got an SSE `error` event and no
    # [DONE], and the gateway records the interaction with this error's status and code.
    error: TollgateError | None

    def feed(self, chunk: bytes) -> bytes:
        """Client bytes for this upstream chunk (possibly empty while an event is incomplete)."""

    def finish(self) -> bytes:
        """Client bytes still buffered when the upstream stream ends."""

    def completion_text(self) -> str:
        """The answer's text so far: what tiktoken counts when the upstream reported no usage."""


class Provider(Protocol):
    vendor: str
    timeout: aiohttp.ClientTimeout

    async def request(self, call: Call) -> UpstreamRequest:
        """The upstream request (async: a credential may need minting, e.g. Vertex's OAuth token)."""

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        """The client's answer and its usage (some vendors report usage in headers, e.g. Bedrock's
        InvokeModel)."""

    def stream(self, call: Call) -> StreamRelay: ...

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError: ...

    def models(self, body: bytes) -> list[dict[str, Any]]:
        """Model ids from the vendor's model list answer."""

    def proxy_model(self, path: str, body: bytes) -> str:
        """The model a native (pass-through) request names, or "" when it names none."""
