"""MockGemini and MockVertex are faithful: the official google-genai SDK talks to them over loopback, and
they reject what the real APIs reject, in Google's error shape."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import httpx
import pytest
from google import genai
from google.genai import errors, types
from google.oauth2 import service_account

from mocks.gemini import MockGemini
from mocks.server import ThreadedServer
from mocks.vertex import MockVertex, service_account_info

KEY = "AIza-mock-key-0123456789"
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
MODEL = "gemini-2.5-flash"
URL = f"/v1beta/models/{MODEL}:generateContent"


@pytest.fixture(scope="module")
def mock() -> MockGemini:
    return MockGemini(api_key=KEY)


@pytest.fixture(scope="module")
def server(mock: MockGemini) -> Iterator[ThreadedServer]:
    with ThreadedServer(mock) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(mock: MockGemini) -> None:
    mock.reset()


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> genai.Client:
    return genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=server.url, api_version="v1beta")
    )


def weather(location: str) -> str:
    """The weather in a city."""
    return "sunny"


def test_generate_content(client: genai.Client, mock: MockGemini) -> None:
    config = types.GenerateContentConfig(
        system_instruction="Be brief.", temperature=0.3, max_output_tokens=100
    )
    answer = client.models.generate_content(model=MODEL, contents="Hello there", config=config)
    assert answer.text == "Mock answer to: Hello there"
    assert answer.model_version == MODEL and answer.response_id
    assert answer.candidates and answer.candidates[0].finish_reason == types.FinishReason.STOP
    usage = answer.usage_metadata
    assert usage and usage.prompt_token_count and usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    (request,) = mock.requests
    assert request.path == URL and request.headers["x-goog-api-key"] == KEY


def test_stream(client: genai.Client) -> None:
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Hello there"))
    assert len(chunks) > 2 and "".join(c.text or "" for c in chunks) == "Mock answer to: Hello there"
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert [c.candidates[0].finish_reason for c in chunks[:-1] if c.candidates] == [None] * (len(chunks) - 1)
    final = chunks[-1].usage_metadata
    assert final and final.candidates_token_count == 6


def test_max_tokens_truncates(client: genai.Client) -> None:
    config = types.GenerateContentConfig(max_output_tokens=2)
    answer = client.models.generate_content(model=MODEL, contents="Hello there", config=config)
    assert answer.candidates and answer.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert answer.usage_metadata and answer.usage_metadata.candidates_token_count == 2


def test_function_calling_round_trip(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[weather], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
    )
    answer = client.models.generate_content(model=MODEL, contents="Use weather for Paris", config=config)
    assert answer.function_calls and answer.function_calls[0].name == "weather"
    assert answer.function_calls[0].args == {"location": "Paris"}
    call = answer.candidates[0].content if answer.candidates else None
    assert call is not None
    response = types.Part.from_function_response(name="weather", response={"result": "sunny"})
    history = [types.UserContent("Use weather for Paris"), call, types.UserContent([response])]
    follow_up = client.models.generate_content(model=MODEL, contents=history, config=config)
    assert follow_up.text == 'Mock answer to tool result: {"result":"sunny"}'


def test_forced_function_call(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[weather],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    answer = client.models.generate_content(model=MODEL, contents="Anything", config=config)
    assert answer.function_calls and answer.function_calls[0].name == "weather"


def test_json_schema_and_image(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema={"type": "object"}
    )
    contents = [types.Part.from_bytes(data=PIXEL, mime_type="image/png"), "Describe"]
    answer = client.models.generate_content(model=MODEL, contents=contents, config=config)
    assert json.loads(answer.text or "") == {"answer": "Mock answer to: Describe"}
    assert answer.usage_metadata and (answer.usage_metadata.prompt_token_count or 0) > 258


def test_knobs_cached_thoughts_blocked(client: genai.Client, mock: MockGemini) -> None:
    mock.cached_tokens, mock.thoughts_tokens = 2, 5
    usage = client.models.generate_content(model=MODEL, contents="Hello there").usage_metadata
    assert usage and usage.cached_content_token_count == 2 and usage.thoughts_token_count == 5
    mock.block_reason = "SAFETY"
    blocked = client.models.generate_content(model=MODEL, contents="Hello there")
    assert not blocked.candidates and blocked.prompt_feedback
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.SAFETY


def test_embeddings_models_and_tokens(client: genai.Client) -> None:
    config = types.EmbedContentConfig(output_dimensionality=8)
    result = client.models.embed_content(model="gemini-embedding-001", contents=["a", "b"], config=config)
    assert result.embeddings and [len(e.values or ()) for e in result.embeddings] == [8, 8]
    again = client.models.embed_content(model="gemini-embedding-001", contents=["a"], config=config)
    assert again.embeddings and again.embeddings[0].values == result.embeddings[0].values
    names = [m.name for m in client.models.list()]
    assert "models/gemini-2.5-flash" in names and "models/gemini-embedding-001" in names
    assert client.models.get(model=MODEL).input_token_limit == 1048576
    assert (client.models.count_tokens(model=MODEL, contents="Hello there").total_tokens or 0) > 0


def test_sdk_sees_google_errors(server: ThreadedServer, client: genai.Client, mock: MockGemini) -> None:
    bad = genai.Client(api_key="wrong", http_options=types.HttpOptions(base_url=server.url))
    with pytest.raises(errors.ClientError) as refused:
        bad.models.generate_content(model=MODEL, contents="x")
    assert (
        refused.value.code == 400
        and refused.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    )
    with pytest.raises(errors.ClientError) as missing:
        client.models.generate_content(model="gemini-0", contents="x")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    mock.fail_status, mock.fail_retry_after = 429, "30s"
    with pytest.raises(errors.ClientError) as limited:
        client.models.generate_content(model=MODEL, contents="x")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    assert limited.value.details["error"]["details"][0]["retryDelay"] == "30s"
    mock.fail_status = 503
    with pytest.raises(errors.ServerError):
        client.models.generate_content(model=MODEL, contents="x")


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


CALL: Any = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}
TOOLS = [{"functionDeclarations": [{"name": "f"}]}]
REJECTED: list[tuple[str, Any, int, str]] = [
    ("not JSON", b"{", 400, "Invalid JSON payload received"),
    ("unknown field", {"contents": [user("x")], "foo": 1}, 400, 'Unknown name "foo": Cannot find field.'),
    ("no contents", {"contents": []}, 400, "contents is not specified"),
    ("empty parts", {"contents": [{"role": "user", "parts": []}]}, 400, "contents.parts must not be empty"),
    ("empty text", {"contents": [user("")]}, 400, "required oneof field 'data'"),
    (
        "bad role",
        {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        400,
        "valid role: user, model",
    ),
    (
        "wrong type",
        {"contents": [user("x")], "generationConfig": {"temperature": "hot"}},
        400,
        "Invalid value at 'generation_config.temperature' (TYPE_FLOAT)",
    ),
    (
        "bad base64",
        {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "%%"}}]}]},
        400,
        "Base64 decoding failed",
    ),
    (
        "unsupported media",
        {"contents": [{"parts": [{"inlineData": {"mimeType": "image/bmp", "data": "AA=="}}]}]},
        400,
        "Unsupported MIME type: image/bmp",
    ),
    (
        "function call first",
        {"contents": [CALL], "tools": TOOLS},
        400,
        "function call turn comes immediately after",
    ),
    (
        "responses do not match calls",
        {
            "contents": [
                user("x"),
                {**CALL, "parts": CALL["parts"] * 2},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
            ],
            "tools": TOOLS,
        },
        400,
        "number of function response parts is equal",
    ),
    (
        "OpenAPI schema refuses JSON Schema words",
        {
            "contents": [user("x")],
            "tools": [
                {
                    "functionDeclarations": [
                        {"name": "f", "parameters": {"type": "object", "additionalProperties": False}}
                    ]
                }
            ],
        },
        400,
        "Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters'",
    ),
    (
        "bad function name",
        {"contents": [user("x")], "tools": [{"functionDeclarations": [{"name": "1 f"}]}]},
        400,
        "Invalid function name",
    ),
    (
        "allowed names outside ANY",
        {
            "contents": [user("x")],
            "tools": TOOLS,
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}},
        },
        400,
        "mode is ANY",
    ),
    (
        "schema without JSON",
        {"contents": [user("x")], "generationConfig": {"responseJsonSchema": {}}},
        400,
        "response_mime_type",
    ),
    (
        "bad response type",
        {"contents": [user("x")], "generationConfig": {"responseMimeType": "text/html"}},
        400,
        "allowed mimetypes",
    ),
    (
        "too many candidates",
        {"contents": [user("x")], "generationConfig": {"candidateCount": 9}},
        400,
        "candidate_count",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "message"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED]
)
def test_rejects_what_the_api_rejects(server: ThreadedServer, body: Any, status: int, message: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(server.url + URL, content=content, headers={"x-goog-api-key": KEY})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status and error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"]


def test_auth_is_required_and_snake_case_is_accepted(server: ThreadedServer) -> None:
    body = {"contents": [user("Hi")], "generation_config": {"max_output_tokens": 50}}
    missing = httpx.post(server.url + URL, json=body)
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    by_query = httpx.post(server.url + URL, params={"key": KEY}, json=body)
    assert by_query.status_code == 200


def test_context_window(server: ThreadedServer, mock: MockGemini) -> None:
    mock.input_token_limit = 3
    response = httpx.post(
        server.url + URL, json={"contents": [user("a b c d e f")]}, headers={"x-goog-api-key": KEY}
    )
    assert response.status_code == 400
    assert (
        response.json()["error"]["message"]
        == "The input token count (6) exceeds the maximum number of tokens allowed (3)."
    )


def test_stream_without_alt_sse_is_a_json_array(server: ThreadedServer) -> None:
    url = server.url + f"/v1beta/models/{MODEL}:streamGenerateContent"
    response = httpx.post(url, json={"contents": [user("Hi")]}, headers={"x-goog-api-key": KEY})
    chunks = response.json()
    assert isinstance(chunks, list) and "".join(
        c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks
    ) == ("Mock answer to: Hi")


# --- Vertex -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vertex() -> Iterator[tuple[ThreadedServer, MockVertex, dict[str, Any]]]:
    info = service_account_info("pending", "proj-1")
    app = MockVertex(info, "proj-1")
    with ThreadedServer(app) as running:
        info["token_uri"] = running.url + "/token"
        yield running, app, info


def credentials(info: dict[str, Any]) -> service_account.Credentials:
    scopes = ["https://www.googleapis.com/auth/cloud-platform"]
    creds: service_account.Credentials = service_account.Credentials.from_service_account_info(
        info, scopes=scopes
    )  # type: ignore[no-untyped-call]
    return creds


def test_vertex_through_the_sdk(vertex: tuple[ThreadedServer, MockVertex, dict[str, Any]]) -> None:
    server, app, info = vertex
    client = genai.Client(
        vertexai=True,
        project="proj-1",
        location="us-central1",
        credentials=credentials(info),
        http_options=types.HttpOptions(base_url=server.url, api_version="v1"),
    )
    answer = client.models.generate_content(model=MODEL, contents="Hello there")
    assert answer.text == "Mock answer to: Hello there"
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="Hello there"))
    assert "".join(c.text or "" for c in chunks) == "Mock answer to: Hello there"
    config = types.EmbedContentConfig(output_dimensionality=4)
    embedded = client.models.embed_content(model="text-embedding-005", contents=["a", "b"], config=config)
    assert embedded.embeddings and [len(e.values or ()) for e in embedded.embeddings] == [4, 4]
    assert embedded.embeddings[0].statistics and embedded.embeddings[0].statistics.token_count == 1
    paths = [r.path for r in app.requests]
    assert (
        paths[0] == "/token"
        and paths[1]
        == f"/v1/projects/proj-1/locations/us-central1/publishers/google/models/{MODEL}:generateContent"
    )
    assert app.token_requests == 1  # the SDK reuses its token


def test_vertex_token_endpoint_checks_the_signature(
    vertex: tuple[ThreadedServer, MockVertex, dict[str, Any]],
) -> None:
    info = vertex[2]
    impostor = service_account_info(info["token_uri"], "proj-1") | {
        "client_email": info["client_email"],
        "private_key_id": info["private_key_id"],
    }
    with pytest.raises(google.auth.exceptions.RefreshError, match="Invalid JWT Signature"):
        credentials(impostor).refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    genuine = credentials(info)
    genuine.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    assert genuine.token and genuine.token.startswith("ya29.")


def test_vertex_refuses_without_a_token_and_outside_its_project(
    vertex: tuple[ThreadedServer, MockVertex, dict[str, Any]],
) -> None:
    server, _, info = vertex
    path = f"/v1/projects/proj-1/locations/us-central1/publishers/google/models/{MODEL}:generateContent"
    body = {"contents": [user("Hi")]}
    unauthenticated = httpx.post(server.url + path, json=body, headers={"authorization": "Bearer nope"})
    assert (
        unauthenticated.status_code == 401 and unauthenticated.json()["error"]["status"] == "UNAUTHENTICATED"
    )
    genuine = credentials(info)
    genuine.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    auth = {"authorization": f"Bearer {genuine.token}"}
    other = httpx.post(server.url + path.replace("proj-1", "proj-2"), json=body, headers=auth)
    assert other.status_code == 403 and "aiplatform.endpoints.predict" in other.json()["error"]["message"]
    roleless = httpx.post(server.url + path, json={"contents": [{"parts": [{"text": "Hi"}]}]}, headers=auth)
    assert roleless.status_code == 400  # Vertex, unlike the Gemini API, wants the role
    unknown = httpx.post(server.url + path.replace(MODEL, "gemini-0"), json=body, headers=auth)
    assert unknown.status_code == 404 and "Publisher Model" in unknown.json()["error"]["message"]
