"""`/openai/{llm}/v1/...` through a real gateway process, with the official OpenAI SDK, against the mock."""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

import httpx
import pytest

from mocks.openai import MockOpenAI
from tests.support import APP_KEY, UPSTREAM_KEY, Gateway

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to Tollgate"}]
ANSWER = "Mock answer to: Say hello to Tollgate"
INTERFACE_FIELDS = {
    "timestamp",
    "user_id",
    "app_id",
    "llm_id",
    "vendor",
    "model_name",
    "prompt_tokens",
    "response_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "interaction_type",
    "cache_write_tokens",
    "cache_read_tokens",
    "status_code",
    "edge_id",
    "route",
    "attempt",
    "cache_status",
}


def ids(gateway: Gateway) -> dict[str, int]:
    """Admin ids of the base config's entities."""
    app = gateway.admin("GET", "/api/v1/apps").json()["data"][0]
    user = gateway.admin("GET", "/api/v1/users").json()["data"][0]
    llm = gateway.admin("GET", "/api/v1/llms").json()["data"][0]
    return {"app": app["id"], "user": user["id"], "llm": llm["id"]}


def test_chat(gateway: Gateway, upstream: MockOpenAI) -> None:
    answer = gateway.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == ANSWER
    assert answer.model == "gpt-4o-mini-2024-07-18"
    usage = answer.usage
    assert usage is not None

    (record,) = gateway.records(expect=1)
    assert set(record) >= INTERFACE_FIELDS
    expected = ids(gateway)
    assert (record["app_id"], record["user_id"], record["llm_id"]) == (
        expected["app"],
        expected["user"],
        expected["llm"],
    )
    assert record["interaction_type"] == "chat" and record["status_code"] == 200
    assert (record["vendor"], record["model_name"]) == ("openai", "gpt-4o-mini")
    assert record["prompt_tokens"] == usage.prompt_tokens
    assert record["response_tokens"] == usage.completion_tokens
    assert record["total_tokens"] == usage.total_tokens
    # priced by the dated answer model through the undated price, per 1M tokens
    assert record["cost"] == pytest.approx(usage.prompt_tokens * 0.15e-6 + usage.completion_tokens * 0.60e-6)
    assert record["latency_ms"] > 0 and record["edge_id"] == "" and record["attempt"] == 1
    assert isinstance(record["cost"], float) and isinstance(record["prompt_tokens"], int)

    (request,) = upstream.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert APP_KEY not in str(request.headers) and APP_KEY.encode() not in request.body


def test_default_model_fills_a_missing_model(gateway: Gateway, upstream: MockOpenAI) -> None:
    response = httpx.post(
        gateway.url + "/openai/gpt/v1/chat/completions",
        json={"messages": MESSAGES},
        headers={"authorization": f"Bearer {APP_KEY}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "gpt-4o-mini-2024-07-18"
    assert upstream.requests[0].body.startswith(b'{"model":"gpt-4o-mini",')
    assert gateway.records(expect=1)[0]["model_name"] == "gpt-4o-mini"


def test_cached_prompt_tokens_are_priced_at_the_cache_rate(gateway: Gateway, upstream: MockOpenAI) -> None:
    upstream.cached_tokens = 10
    answer = gateway.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.usage is not None
    prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
    (record,) = gateway.records(expect=1)
    assert record["cache_read_tokens"] == 10 and record["prompt_tokens"] == prompt
    expected = (prompt - 10) * 0.15e-6 + 10 * 0.075e-6 + completion * 0.60e-6
    assert record["cost"] == pytest.approx(expected)


def test_stream(gateway: Gateway, upstream: MockOpenAI) -> None:
    stream = gateway.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    # the client did not ask for usage: the gateway asked the upstream for it and kept it to itself
    assert all(c.usage is None and c.choices for c in chunks)
    sent = upstream.requests[0].json()
    assert sent["stream_options"] == {"include_usage": True}

    (record,) = gateway.records(expect=1)
    assert record["status_code"] == 200 and record["stream"] is True
    assert record["prompt_tokens"] > 0 and record["response_tokens"] > 0 and record["cost"] > 0


def test_stream_with_usage_requested(gateway: Gateway) -> None:
    stream = gateway.openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    (record,) = gateway.records(expect=1)
    assert (record["prompt_tokens"], record["response_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_stream_is_relayed_as_it_arrives(gateway: Gateway, upstream: MockOpenAI) -> None:
    upstream.chunk_delay_s = 0.3
    with httpx.stream(
        "POST",
        gateway.url + "/openai/gpt/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        headers={"authorization": f"Bearer {APP_KEY}"},
        timeout=30,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = response.iter_lines()
        first = next(line for line in events if line.startswith("data:"))
        assert '"role":"assistant"' in first.replace(" ", "")
        # the first event arrived while the upstream was still producing the rest
        assert len(upstream.requests) == 1 and upstream.disconnects == 0
        rest = [line for line in events if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"


def test_stream_without_upstream_usage_is_counted_with_tiktoken(
    gateway: Gateway, upstream: MockOpenAI
) -> None:
    upstream.omit_usage = True
    list(gateway.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    upstream.omit_usage = False
    reference = gateway.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert reference.usage is not None
    estimated, reported = gateway.records(expect=2)[1], gateway.records(expect=2)[0]
    # the mock counts like OpenAI's chat format with cl100k_base, as the gateway's fallback does
    assert estimated["prompt_tokens"] == reported["prompt_tokens"] == reference.usage.prompt_tokens
    assert estimated["response_tokens"] == reported["response_tokens"]


def test_non_stream_without_upstream_usage_is_counted_with_tiktoken(
    gateway: Gateway, upstream: MockOpenAI
) -> None:
    upstream.omit_usage = True
    answer = gateway.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.usage is None
    (record,) = gateway.records(expect=1)
    assert record["prompt_tokens"] > 0 and record["response_tokens"] > 0  # the answer's text, counted


def test_embeddings(gateway: Gateway, upstream: MockOpenAI) -> None:
    client = gateway.openai()
    result = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"], dimensions=8)
    assert [len(d.embedding) for d in result.data] == [8, 8]
    as_float = client.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float"
    )
    raw = upstream.requests[0].json()
    assert raw["encoding_format"] == "base64"  # the SDK's default, passed through untouched
    vector = struct.unpack(
        "<8f",
        base64.b64decode(
            httpx.post(
                gateway.url + "/openai/gpt/v1/embeddings",
                headers={"authorization": f"Bearer {APP_KEY}"},
                json={
                    "model": "text-embedding-3-small",
                    "input": "hello",
                    "dimensions": 8,
                    "encoding_format": "base64",
                },
            ).json()["data"][0]["embedding"]
        ),
    )
    assert vector == pytest.approx(result.data[0].embedding, rel=1e-6)
    assert len(as_float.data[0].embedding) == 1536

    records = gateway.records(expect=3)
    assert {r["interaction_type"] for r in records} == {"embedding"}
    assert all(r["prompt_tokens"] > 0 and r["response_tokens"] == 0 and r["cost"] > 0 for r in records)


def test_models_lists_only_what_the_llm_allows(gateway: Gateway) -> None:
    models = {m.id for m in gateway.openai().models.list()}
    assert {"gpt-4o", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "text-embedding-3-small"} <= models
    assert all(re.fullmatch("gpt-4o.*|text-embedding-3-.*", m) for m in models)  # the LLM's allowed_models
    assert gateway.records() == []  # listing models is not an interaction


def test_models_on_an_llm_without_restrictions(gateway: Gateway, start_gateway: object) -> None:
    gateway.admin("PATCH", "/api/v1/apps/1", json={"llms": ["gpt", "other"]})
    gateway.admin("PATCH", "/api/v1/groups/1", json={"llms": ["gpt", "other"]})
    models = {m.id for m in gateway.openai(llm="other").models.list()}
    assert {"gpt-4.1", "o3-mini", "text-embedding-ada-002"} <= models


def test_answers_carry_a_request_id(gateway: Gateway) -> None:
    response = gateway.openai().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )  # type: ignore[arg-type]
    request_id = response.headers["x-request-id"]
    assert gateway.records(expect=1)[0]["request_id"] == request_id


WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def test_tools_round_trip(gateway: Gateway, upstream: MockOpenAI) -> None:
    client = gateway.openai()
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask, tools=[WEATHER], tool_choice="required"
    )  # type: ignore[arg-type, list-item]
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    follow_up = [*ask, first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]  # fmt: skip
    second = client.chat.completions.create(model="gpt-4o-mini", messages=follow_up, tools=[WEATHER])  # type: ignore[arg-type, list-item]
    assert second.choices[0].message.content == "Mock answer to tool result: sunny, 21 C"
    assert upstream.requests[1].json()["messages"][1]["tool_calls"][0]["id"] == call.id  # passed through


def test_stream_with_tools(gateway: Gateway) -> None:
    stream = gateway.openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        stream=True,
    )
    chunks = list(stream)
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function is not None and calls[0].function.name == "weather"
    arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert arguments == '{"location": "Paris"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_vision_is_passed_through(gateway: Gateway, upstream: MockOpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content: Any = [{"type": "text", "text": "What is in this picture?"}, image]
    answer = gateway.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": content}]
    )
    assert answer.choices[0].message.content == "Mock answer to: What is in this picture?"
    assert upstream.requests[0].json()["messages"][0]["content"][1] == image
