"""No body, however broken, makes the gateway answer 5xx: random bytes, wrong types, deep nesting, huge
numbers. Hypothesis generates them; a fixed list covers the classics."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mocks.openai import MockOpenAI
from tests.support import APP_KEY, Gateway

pytestmark = pytest.mark.one_store  # refusals of malformed requests: the same on either store

PATHS = ["/openai/gpt/v1/chat/completions", "/openai/gpt/v1/embeddings", "/proxy/gpt/chat/completions"]

CLASSICS: list[bytes] = [
    b"",
    b"\x00\xff\xfe garbage \x80",
    b"null",
    b"[]",
    b'"string"',
    b"{}",
    b'{"messages": null}',
    b'{"messages": [null]}',
    b'{"messages": [1, "two", {"role": 3}]}',
    b'{"messages": [{"role": "user", "content": "hi"}], "model": null}',
    b'{"messages": [{"role": "user", "content": "hi"}], "model": ["gpt-4o-mini"]}',
    b'{"messages": [{"role": "user", "content": "hi"}], "stream": 1}',
    b'{"messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": 5}',
    b'{"messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": null}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e999999}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 123456789012345678901234567890}',
    b'{"messages": [{"role": "user", "content": "hi"}], "temperature": -1e308}',
    b'{"messages": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
    b'{"model": "gpt-4o-mini", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"messages": [{"role": "user", "content": "hi"}]' + b" " * 1000,
    b'{"a":' * 3000,
    '{"messages": [{"role": "user", "content": "héllo \U0001f600"}]}'.encode(),
    b'{"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini", "model": 7}',
]


def _post(gateway: Gateway, path: str, body: bytes, content_type: str = "application/json") -> httpx.Response:
    headers = {"authorization": f"Bearer {APP_KEY}", "content-type": content_type}
    return httpx.post(gateway.url + path, content=body, headers=headers, timeout=30)


@pytest.mark.parametrize("path", PATHS)
def test_classic_garbage_never_gives_5xx(gateway: Gateway, upstream: MockOpenAI, path: str) -> None:
    for body in CLASSICS:
        response = _post(gateway, path, body)
        assert response.status_code < 500, (body[:80], response.status_code, response.text[:300])
        if response.status_code >= 400 and path.startswith("/openai/"):
            assert response.json()["error"]["code"], response.text
        elif response.status_code >= 400:  # /proxy/ passes the vendor's own error through, as it was
            assert "error" in response.json(), response.text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
chat_like = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values | st.sampled_from(["gpt-4o-mini", "gpt-4o", "o3-mini", ""]),
        "messages": json_values
        | st.lists(st.fixed_dictionaries({"role": json_values, "content": json_values})),
        "stream": json_values,
        "stream_options": json_values,
        "input": json_values,
        "max_tokens": json_values,
        "n": json_values,
        "tools": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=200) | chat_like.map(lambda d: json.dumps(d).encode()),
    path=st.sampled_from(PATHS),
)
def test_generated_garbage_never_gives_5xx(gateway: Gateway, body: bytes, path: str) -> None:
    response = _post(gateway, path, body)
    assert response.status_code < 500, (body[:200], response.status_code, response.text[:300])


def test_gateway_still_serves_after_garbage(gateway: Gateway) -> None:
    for body in CLASSICS:
        _post(gateway, PATHS[0], body)
    answer = gateway.openai().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "still there?"}]
    )
    assert answer.choices[0].message.content
