"""Reading a client request: which endpoint and LLM it names, its body (bounded), and the few fields of it
the gateway reads (decoded into small view Structs; everything else is forwarded untouched)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import msgspec

from gateway.errors import InvalidRequest, MethodNotAllowed, NotFound, RequestTooLarge
from gateway.types import ASGIReceive, Scope
from providers.base import Call, Operation

_OPENAI_ENDPOINTS: dict[str, tuple[str, Operation]] = {
    "v1/chat/completions": ("POST", Operation.CHAT),
    "v1/embeddings": ("POST", Operation.EMBEDDINGS),
    "v1/models": ("GET", Operation.MODELS),
}
# Client headers a pass-through request does not forward: hop-by-hop ones, the length, every credential.
_NOT_FORWARDED = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"accept-encoding",
        b"authorization",
        b"x-api-key",
        b"x-goog-api-key",
        b"api-key",
        b"cookie",
    }
)


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class _ChatView(msgspec.Struct):
    messages: list[msgspec.Raw]
    model: str | msgspec.UnsetType | None = msgspec.UNSET
    stream: bool | None = None
    stream_options: _StreamOptions | msgspec.UnsetType | None = msgspec.UNSET


class _EmbeddingsView(msgspec.Struct):
    input: msgspec.Raw
    model: str | msgspec.UnsetType | None = msgspec.UNSET


_chat_view = msgspec.json.Decoder(_ChatView)
_embeddings_view = msgspec.json.Decoder(_EmbeddingsView)


def endpoint(scope: Scope) -> tuple[Operation, str, str]:
    """(operation, LLM slug, proxy path) of `/openai/{llm}/v1/...` or `/proxy/{llm}/{path}`."""
    prefix, _, rest = scope["path"][1:].partition("/")
    slug, _, tail = rest.partition("/")
    if prefix == "proxy":
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        # forward the path as the client encoded it (vendors put `:` and `%3A` in model paths)
        return Operation.PROXY, slug, raw.split(b"/", 3)[3].decode("latin-1") if raw.count(b"/") >= 3 else ""
    method_op = _OPENAI_ENDPOINTS.get(tail)
    if method_op is None or not slug:
        raise NotFound(f"no such endpoint: {scope['path']}")
    method, op = method_op
    if scope["method"] != method:
        raise MethodNotAllowed(f"{scope['path']} takes {method}")
    return op, slug, ""


async def read_body(headers: dict[bytes, bytes], receive: ASGIReceive, limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the request body is larger than {limit} bytes")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if message["type"] == "http.disconnect":
            raise ClientGone
        return body
    chunks, size = [body], len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_call(op: Operation, body: bytes) -> Call:
    """The call of a `/openai/` request; 400 for a body that is not the endpoint's JSON object."""
    if op is Operation.MODELS:
        return Call(op=op, body=b"", method="GET")
    try:
        view = _chat_view.decode(body) if op is Operation.CHAT else _embeddings_view.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request body: {exc}") from None
    except (msgspec.DecodeError, RecursionError):
        raise InvalidRequest("the request body is not valid JSON") from None
    stream = include_usage = has_stream_options = False
    if isinstance(view, _ChatView):
        if not view.messages:
            raise InvalidRequest("invalid request body: 'messages' must not be empty")
        options = view.stream_options
        stream = bool(view.stream)
        include_usage = isinstance(options, _StreamOptions) and bool(options.include_usage)
        has_stream_options = options is not msgspec.UNSET
    model = view.model if isinstance(view.model, str) else ""
    return Call(
        op=op,
        body=body,
        model=model,
        model_in_body=bool(model),
        model_key=view.model is not msgspec.UNSET,
        stream=stream,
        include_usage=include_usage,
        has_stream_options=has_stream_options,
    )


def proxy_call(scope: Scope, headers: dict[bytes, bytes], path: str, body: bytes) -> Call:
    """The call of a `/proxy/` request: the native request, minus the gateway's credentials."""
    query: bytes = scope.get("query_string", b"")
    query_text = query.decode("latin-1")
    if b"key=" in query:  # the Google SDK's ?key= is the app key, not the upstream's
        query_text = urlencode(
            [(k, v) for k, v in parse_qsl(query_text, keep_blank_values=True) if k != "key"]
        )
    forwarded = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers.items()
        if name not in _NOT_FORWARDED
    }
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    return Call(
        op=Operation.PROXY,
        body=body,
        method=scope["method"],
        path=path,
        query=query_text,
        headers=forwarded,
        content_type=content_type,
    )


def reparse(call: Call) -> Call:
    """The call again after a filter rewrote its body (a `/openai/` call's view fields follow the body)."""
    if call.op is Operation.PROXY or call.op is Operation.MODELS:
        return call
    fresh = parse_call(call.op, call.body)
    if not fresh.model:  # the body names none: keep the LLM's default_model, chosen in the auth phase
        fresh.model, fresh.model_in_body = call.model, False
    return fresh
