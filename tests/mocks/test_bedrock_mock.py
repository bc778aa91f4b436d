"""MockBedrock is faithful: boto3 talks to it over loopback (its signing, its event-stream parser, its
error classes), and it refuses what Bedrock refuses."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EventStreamError

from mocks.bedrock import TEST_ACCESS_KEY, TEST_SECRET_KEY, MockBedrock
from mocks.server import ThreadedServer

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TOKEN_KEY, TOKEN_SECRET, TOKEN = (
    "AKIDWITHSESSION00001",
    "another/secret/key/0123456789abcdef",
    "the-session-token",
)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
USER: Any = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
WEATHER: Any = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Weather for a city",
                "inputSchema": {"json": {"type": "object"}},
            }
        }
    ]
}
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"}, parameter_validation=False)


@pytest.fixture(scope="module")
def mock() -> MockBedrock:
    return MockBedrock({TEST_ACCESS_KEY: (TEST_SECRET_KEY, None), TOKEN_KEY: (TOKEN_SECRET, TOKEN)})


@pytest.fixture(scope="module")
def server(mock: MockBedrock) -> Iterator[ThreadedServer]:
    with ThreadedServer(mock) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(mock: MockBedrock) -> None:
    mock.reset()


def runtime(
    server: ThreadedServer, key: str = TEST_ACCESS_KEY, secret: str = TEST_SECRET_KEY, **kwargs: Any
) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=server.url,
        region_name=kwargs.pop("region", "us-east-1"),
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=NO_RETRY,
        **kwargs,
    )


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> Any:
    return runtime(server)


# --- Converse -----------------------------------------------------------------------------------------


def test_converse_answer_and_usage(client: Any, mock: MockBedrock) -> None:
    answer = client.converse(modelId=HAIKU, messages=USER, system=[{"text": "Be brief."}])
    assert answer["output"]["message"] == {
        "role": "assistant",
        "content": [{"text": "Mock answer to: Weather in Paris?"}],
    }
    assert answer["stopReason"] == "end_turn"
    usage = answer["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    # the model id arrives percent-encoded, as the SDK sends it
    assert mock.requests[0].path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"


def test_cache_counts_are_outside_input_tokens(client: Any, mock: MockBedrock) -> None:
    mock.cache_read_tokens, mock.cache_write_tokens = 100, 40
    usage = client.converse(modelId=HAIKU, messages=USER)["usage"]
    assert (usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]) == (100, 40)
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] + 140


def test_limits_and_stop_sequences(client: Any) -> None:
    cut = client.converse(modelId=HAIKU, messages=USER, inferenceConfig={"maxTokens": 2})
    assert cut["stopReason"] == "max_tokens" and cut["usage"]["outputTokens"] == 2
    stopped = client.converse(modelId=HAIKU, messages=USER, inferenceConfig={"stopSequences": ["Paris"]})
    assert stopped["stopReason"] == "stop_sequence"
    assert stopped["output"]["message"]["content"][0]["text"] == "Mock answer to: Weather in "


def test_tool_use_and_its_result(client: Any) -> None:
    called = client.converse(modelId=HAIKU, messages=USER, toolConfig={**WEATHER, "toolChoice": {"any": {}}})
    assert called["stopReason"] == "tool_use"
    use = called["output"]["message"]["content"][0]["toolUse"]
    assert use["name"] == "get_weather" and use["input"] == {"location": "Paris"}
    result = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "Sunny"}]}}
    messages = [*USER, called["output"]["message"], {"role": "user", "content": [result]}]
    answer = client.converse(modelId=HAIKU, messages=messages, toolConfig=WEATHER)
    assert answer["output"]["message"]["content"][0]["text"] == "Mock answer to tool result: Sunny"


def test_image_bytes(client: Any, mock: MockBedrock) -> None:
    content = [{"text": "What is it?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]
    client.converse(modelId=HAIKU, messages=[{"role": "user", "content": content}])
    sent = mock.requests[0].json()["messages"][0]["content"][1]
    assert base64.b64decode(sent["image"]["source"]["bytes"]) == PNG  # a JSON blob is base64


# --- ConverseStream -------------------------------------------------------------------------------------


def test_converse_stream_events(client: Any, mock: MockBedrock) -> None:
    events = list(client.converse_stream(modelId=HAIKU, messages=USER)["stream"])
    assert next(iter(events[0])) == "messageStart" and events[0]["messageStart"]["role"] == "assistant"
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "Mock answer to: Weather in Paris?"
    assert [next(iter(e)) for e in events[-3:]] == ["contentBlockStop", "messageStop", "metadata"]
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0
    assert mock.requests[0].path.endswith("%3A0/converse-stream")


def test_converse_stream_tool_use(client: Any) -> None:
    stream = client.converse_stream(
        modelId=HAIKU, messages=USER, toolConfig={**WEATHER, "toolChoice": {"any": {}}}
    )
    events = list(stream["stream"])
    start = next(e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e)
    assert start["name"] == "get_weather" and start["toolUseId"].startswith("tooluse_")
    arguments = "".join(
        e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e
    )
    assert json.loads(arguments) == {"location": "Paris"}
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}


def test_exception_event_mid_stream(client: Any, mock: MockBedrock) -> None:
    mock.stream_exception, mock.fail_message = "throttlingException", "Too many tokens, please wait."
    received = []
    with pytest.raises(EventStreamError, match=r"throttlingException.*Too many tokens"):
        for event in client.converse_stream(modelId=HAIKU, messages=USER)["stream"]:
            received.append(event)
    assert len(received) == 2


# --- InvokeModel embeddings and the control plane ------------------------------------------------------


def test_titan_embeddings(client: Any) -> None:
    answer = client.invoke_model(
        modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "hello", "dimensions": 256})
    )
    body = json.loads(answer["body"].read())
    assert len(body["embedding"]) == 256 and body["inputTextTokenCount"] == 1
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"] == "1"
    again = json.loads(
        client.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "hello"}))[
            "body"
        ].read()
    )
    assert len(again["embedding"]) == 1024


def test_cohere_embeddings(client: Any) -> None:
    answer = client.invoke_model(
        modelId="cohere.embed-english-v3",
        body=json.dumps({"texts": ["a", "b c"], "input_type": "search_document"}),
    )
    body = json.loads(answer["body"].read())
    assert [len(v) for v in body["embeddings"]] == [1024, 1024] and body[
        "response_type"
    ] == "embeddings_floats"
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"] == "3"


def test_foundation_models_on_the_control_plane(server: ThreadedServer) -> None:
    control = boto3.client(
        "bedrock",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
    )
    models = {m["modelId"]: m for m in control.list_foundation_models()["modelSummaries"]}
    assert models[HAIKU]["providerName"] == "Anthropic"
    assert models["amazon.titan-embed-text-v2:0"]["outputModalities"] == ["EMBEDDING"]


# --- authentication ----------------------------------------------------------------------------------------

AUTH_FAILURES = [
    (
        "wrong secret",
        TEST_ACCESS_KEY,
        "not-the-secret",
        {},
        "InvalidSignatureException",
        "signature we calculated",
    ),
    (
        "unknown key",
        "AKIDUNKNOWN000000000",
        TEST_SECRET_KEY,
        {},
        "UnrecognizedClientException",
        "security token",
    ),
    ("missing session token", TOKEN_KEY, TOKEN_SECRET, {}, "UnrecognizedClientException", "security token"),
    (
        "wrong region",
        TEST_ACCESS_KEY,
        TEST_SECRET_KEY,
        {"region": "eu-west-1"},
        "InvalidSignatureException",
        "valid region",
    ),
]


@pytest.mark.parametrize(
    ("key", "secret", "extra", "code", "message"),
    [a[1:] for a in AUTH_FAILURES],
    ids=[a[0] for a in AUTH_FAILURES],
)
def test_bad_signatures_are_refused_like_aws(
    server: ThreadedServer, key: str, secret: str, extra: dict[str, Any], code: str, message: str
) -> None:
    with pytest.raises(ClientError, match=message) as refused:
        runtime(server, key, secret, **extra).converse(modelId=HAIKU, messages=USER)
    assert refused.value.response["Error"]["Code"] == code
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_session_token_is_accepted(server: ThreadedServer) -> None:
    client = runtime(server, TOKEN_KEY, TOKEN_SECRET, aws_session_token=TOKEN)
    assert client.converse(modelId=HAIKU, messages=USER)["stopReason"] == "end_turn"


def signed_post(server: ThreadedServer, path: str, body: Any) -> httpx.Response:
    """A request boto3 would not serialize, signed as boto3 signs."""
    data = json.dumps(body).encode()
    request = AWSRequest("POST", server.url + path, {"content-type": "application/json"}, data)
    SigV4Auth(Credentials(TEST_ACCESS_KEY, TEST_SECRET_KEY), "bedrock", "us-east-1").add_auth(request)
    return httpx.post(server.url + path, content=data, headers=dict(request.headers.items()))


def test_image_url_sources_are_refused(server: ThreadedServer) -> None:
    image = {"format": "png", "source": {"url": "https://example.com/cat.png"}}
    response = signed_post(server, "/model/x.y/converse", {"messages": USER})
    assert response.status_code == 400  # the signature is right; the model id is not
    response = signed_post(
        server,
        f"/model/{HAIKU.replace(':', '%3A')}/converse",
        {"messages": [{"role": "user", "content": [{"image": image}]}]},
    )
    assert response.status_code == 400 and "must be bytes or an s3Location" in response.json()["message"]
    assert response.headers["x-amzn-errortype"].startswith("ValidationException:")


def test_unsigned_request_is_refused(server: ThreadedServer) -> None:
    response = httpx.post(server.url + "/model/x/converse", json={"messages": USER})
    assert response.status_code == 403 and response.json() == {"message": "Missing Authentication Token"}
    assert response.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException:")


# --- what Bedrock refuses --------------------------------------------------------------------------------

TOOL_USE: Any = {
    "role": "assistant",
    "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}],
}
TOOL_RESULT: Any = {
    "role": "user",
    "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "Sunny"}]}}],
}
REFUSED: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("empty messages", HAIKU, {"messages": []}, "ValidationException", "must start with a user message"),
    (
        "first message from the assistant",
        HAIKU,
        {"messages": [{"role": "assistant", "content": [{"text": "Hi"}]}]},
        "ValidationException",
        "must start with a user message",
    ),
    ("consecutive user turns", HAIKU, {"messages": [*USER, *USER]}, "ValidationException", "must alternate"),
    (
        "system role in messages",
        HAIKU,
        {"messages": [{"role": "system", "content": [{"text": "x"}]}]},
        "ValidationException",
        "enum value set: \\[user, assistant\\]",
    ),
    (
        "empty content",
        HAIKU,
        {"messages": [{"role": "user", "content": []}]},
        "ValidationException",
        "content field in the Message object at messages.0 is empty",
    ),
    (
        "blank text",
        HAIKU,
        {"messages": [{"role": "user", "content": [{"text": " "}]}]},
        "ValidationException",
        "messages.0.content.0 is blank",
    ),
    (
        "toolResult without toolUse",
        HAIKU,
        {"messages": [TOOL_RESULT], "toolConfig": WEATHER},
        "ValidationException",
        "exceeds the number of toolUse blocks of previous turn",
    ),
    (
        "toolUse without its result",
        HAIKU,
        {
            "messages": [*USER, TOOL_USE, {"role": "user", "content": [{"text": "and?"}]}],
            "toolConfig": WEATHER,
        },
        "ValidationException",
        "Expected toolResult blocks at messages.2.content for the following Ids: t1",
    ),
    (
        "tool blocks without toolConfig",
        HAIKU,
        {"messages": [*USER, TOOL_USE, TOOL_RESULT]},
        "ValidationException",
        "toolConfig field must be defined",
    ),
    (
        "temperature above 1",
        HAIKU,
        {"messages": USER, "inferenceConfig": {"temperature": 1.5}},
        "ValidationException",
        "inferenceConfig.temperature.*less than or equal to 1",
    ),
    (
        "topP below 0",
        HAIKU,
        {"messages": USER, "inferenceConfig": {"topP": -0.1}},
        "ValidationException",
        "inferenceConfig.topP.*greater than or equal to 0",
    ),
    (
        "maxTokens 0",
        HAIKU,
        {"messages": USER, "inferenceConfig": {"maxTokens": 0}},
        "ValidationException",
        "inferenceConfig.maxTokens.*greater than or equal to 1",
    ),
    (
        "maxTokens above the model's",
        HAIKU,
        {"messages": USER, "inferenceConfig": {"maxTokens": 100000}},
        "ValidationException",
        "exceeds the model limit of 4096",
    ),
    (
        "empty tools",
        HAIKU,
        {"messages": USER, "toolConfig": {"tools": []}},
        "ValidationException",
        "toolConfig.tools.*length greater than or equal to 1",
    ),
    (
        "tools on a model without tool use",
        "meta.llama3-8b-instruct-v1:0",
        {"messages": USER, "toolConfig": WEATHER},
        "ValidationException",
        "doesn't support tool use",
    ),
    (
        "image bytes of another format",
        HAIKU,
        {
            "messages": [
                {"role": "user", "content": [{"image": {"format": "jpeg", "source": {"bytes": PNG}}}]}
            ]
        },
        "ValidationException",
        "not a valid jpeg",
    ),
    (
        "unknown model",
        "anthropic.claude-9",
        {"messages": USER},
        "ValidationException",
        "provided model identifier is invalid",
    ),
    (
        "model past its end of life",
        "anthropic.claude-instant-v1",
        {"messages": USER},
        "ResourceNotFoundException",
        "end of its life",
    ),
    (
        "embeddings model on Converse",
        "amazon.titan-embed-text-v2:0",
        {"messages": USER},
        "ValidationException",
        "doesn't support the model",
    ),
]


@pytest.mark.parametrize(
    ("model", "request_", "code", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_converse_refuses_what_bedrock_refuses(
    client: Any, model: str, request_: dict[str, Any], code: str, message: str
) -> None:
    with pytest.raises(ClientError, match=message) as refused:
        client.converse(modelId=model, **request_)
    assert refused.value.response["Error"]["Code"] == code


INVOKE_REFUSED = [
    ("titan with texts", "amazon.titan-embed-text-v2:0", {"texts": ["a"]}, "extraneous key \\[texts\\]"),
    ("titan without inputText", "amazon.titan-embed-text-v2:0", {}, "required key \\[inputText\\] not found"),
    (
        "titan bad dimensions",
        "amazon.titan-embed-text-v2:0",
        {"inputText": "a", "dimensions": 300},
        "300 is not a valid enum value",
    ),
    (
        "titan v1 dimensions",
        "amazon.titan-embed-text-v1",
        {"inputText": "a", "dimensions": 256},
        "extraneous key \\[dimensions\\]",
    ),
    (
        "cohere without input_type",
        "cohere.embed-english-v3",
        {"texts": ["a"]},
        "required key \\[input_type\\]",
    ),
    (
        "cohere too many texts",
        "cohere.embed-english-v3",
        {"texts": ["a"] * 97, "input_type": "search_query"},
        "maxItems: 96",
    ),
]


@pytest.mark.parametrize(
    ("model", "body", "message"), [r[1:] for r in INVOKE_REFUSED], ids=[r[0] for r in INVOKE_REFUSED]
)
def test_invoke_refuses_malformed_bodies(client: Any, model: str, body: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientError, match=message) as refused:
        client.invoke_model(modelId=model, body=json.dumps(body))
    assert refused.value.response["Error"]["Code"] == "ValidationException"


FAILURES = [
    (429, "ThrottlingException"),
    (503, "ServiceUnavailableException"),
    (424, "ModelErrorException"),
    (408, "ModelTimeoutException"),
    (500, "InternalServerException"),
]


@pytest.mark.parametrize(("status", "code"), FAILURES, ids=[f[1] for f in FAILURES])
def test_injected_failures_have_aws_classes(client: Any, mock: MockBedrock, status: int, code: str) -> None:
    mock.fail_status, mock.fail_retry_after = status, "4"
    with pytest.raises(ClientError) as failed:
        client.converse(modelId=HAIKU, messages=USER)
    response = failed.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "4"
