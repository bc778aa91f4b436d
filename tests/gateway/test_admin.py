"""The admin API: CRUD for every kind, secrets never shown, changes live without a restart, analytics."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from mocks.openai import MockOpenAI
from tests.conftest import StartGateway
from tests.support import ADMIN_TOKEN, APP_KEY, UPSTREAM_KEY, Gateway, base_config

HELLO: Any = [{"role": "user", "content": "hello"}]

NEW = {
    "llms": (
        {"slug": "new-llm", "vendor": "openai", "api_base": "http://127.0.0.1:9/v1"},
        {"default_model": "m"},
    ),
    "routes": ({"slug": "r", "targets": [{"llm": "gpt"}]}, {"strategy": "round_robin"}),
    "apps": ({"name": "new-app", "owner": "alice@example.com", "llms": ["gpt"]}, {"active": False}),
    "users": ({"email": "bob@example.com", "role": "admin"}, {"role": "developer"}),
    "groups": ({"name": "g2", "llms": ["gpt"]}, {"llms": []}),
    "prices": ({"vendor": "openai", "model": "gpt-9", "input_per_1m": 1.0}, {"output_per_1m": 2.0}),
    "filters": (
        {"name": "f", "phase": "pre_auth", "kind": "regex_block", "config": {"patterns": ["y"]}},
        {"config": {"keywords": ["x"]}},
    ),
    "secrets": ({"name": "S2", "value": "very-secret-value"}, {"value": "another-secret-value"}),
}


@pytest.mark.parametrize("kind", NEW)
def test_crud(gateway: Gateway, kind: str) -> None:
    body, patch = NEW[kind]
    created = gateway.admin("POST", f"/api/v1/{kind}", json=body)
    assert created.status_code == 201, created.text
    entity = created.json()
    assert isinstance(entity["id"], int)
    listed = gateway.admin("GET", f"/api/v1/{kind}").json()["data"]
    assert entity["id"] in [e["id"] for e in listed]
    patched = gateway.admin("PATCH", f"/api/v1/{kind}/{entity['id']}", json=patch)
    assert patched.status_code == 200, patched.text
    fetched = gateway.admin("GET", f"/api/v1/{kind}/{entity['id']}").json()
    for field, value in patch.items():
        if field != "value":
            assert fetched[field] == value
    assert gateway.admin("DELETE", f"/api/v1/{kind}/{entity['id']}").status_code == 204
    assert gateway.admin("GET", f"/api/v1/{kind}/{entity['id']}").status_code == 404
    for method in ("GET", "PATCH", "DELETE"):
        assert gateway.admin(method, f"/api/v1/{kind}/999999", json={}).json()["error"]["code"] == "not_found"


def test_secrets_are_never_returned(gateway: Gateway) -> None:
    gateway.admin("POST", "/api/v1/secrets", json={"name": "TOP", "value": "top-secret-value-42"})
    gateway.admin(
        "POST", "/api/v1/llms", json={"slug": "lit", "vendor": "openai", "api_key": "sk-literal-key-77"}
    )
    everything = "".join(
        gateway.admin("GET", f"/api/v1/{kind}").text for kind in ("secrets", "llms", "apps", "users")
    )
    for secret in ("top-secret-value-42", "sk-literal-key-77", UPSTREAM_KEY, APP_KEY, "enc:v1:"):
        assert secret not in everything
    assert "$SECRET/UPSTREAM" in everything  # references are not secret
    secret = gateway.admin("GET", "/api/v1/secrets").json()["data"][-1]
    assert set(secret) == {"id", "name"}
    raw = gateway.stored_bytes()  # sealed at rest, too
    assert (
        b"top-secret-value-42" not in raw and b"sk-literal-key-77" not in raw and APP_KEY.encode() not in raw
    )


def test_created_app_key_is_shown_once_and_works_at_once(gateway: Gateway) -> None:
    created = gateway.admin(
        "POST", "/api/v1/apps", json={"name": "live", "owner": "alice@example.com", "llms": ["gpt"]}
    )
    key = created.json()["api_key"]
    assert key.startswith("tg-")
    assert gateway.admin("GET", f"/api/v1/apps/{created.json()['id']}").json()["api_key"] == "********"
    answer = gateway.openai(key=key).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert answer.choices[0].message.content


def test_changes_take_effect_without_a_restart(gateway: Gateway, upstream: MockOpenAI) -> None:
    client = gateway.openai()
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    llm = gateway.admin("GET", "/api/v1/llms").json()["data"][0]
    patch = {"allowed_models": ["gpt-4o"], "default_model": "gpt-4o"}
    assert gateway.admin("PATCH", f"/api/v1/llms/{llm['id']}", json=patch).status_code == 200
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    gateway.admin("PATCH", f"/api/v1/llms/{llm['id']}", json={"active": False})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    gateway.admin("PATCH", f"/api/v1/llms/{llm['id']}", json={"active": True, "allowed_models": []})
    assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices
    app = gateway.admin("GET", "/api/v1/apps").json()["data"][0]
    gateway.admin("PATCH", f"/api/v1/apps/{app['id']}", json={"api_key": "tg-rotated-key-123"})
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert gateway.openai(key="tg-rotated-key-123").chat.completions.create(
        model="gpt-4o-mini", messages=HELLO
    )


def test_rename_and_delete_carry_to_references(gateway: Gateway) -> None:
    llm = gateway.admin("GET", "/api/v1/llms").json()["data"][0]
    assert (
        gateway.admin("PATCH", f"/api/v1/llms/{llm['id']}", json={"slug": "gpt-renamed"}).status_code == 200
    )
    app = gateway.admin("GET", "/api/v1/apps").json()["data"][0]
    group = gateway.admin("GET", "/api/v1/groups").json()["data"][0]
    assert app["llms"] == ["gpt-renamed"] and group["llms"] == ["gpt-renamed"]
    assert (
        gateway.openai(llm="gpt-renamed").chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices
    )
    assert gateway.admin("DELETE", f"/api/v1/llms/{llm['id']}").status_code == 204  # in use: never refused
    assert gateway.admin("GET", f"/api/v1/apps/{app['id']}").json()["llms"] == []
    assert gateway.admin("GET", f"/api/v1/groups/{group['id']}").json()["llms"] == []
    user = gateway.admin("GET", "/api/v1/users").json()["data"][0]
    assert gateway.admin("DELETE", f"/api/v1/users/{user['id']}").status_code == 204
    assert gateway.admin("GET", "/api/v1/apps").json()["data"] == []  # a user's apps go with them


def test_invalid_changes_are_refused_with_the_reason(gateway: Gateway) -> None:
    cases = [
        ("POST", "/api/v1/llms", {"slug": "x", "vendor": "nope"}, "vendor"),
        ("POST", "/api/v1/llms", {"slug": "x", "vendor": "openai", "bogus": 1}, "bogus"),
        ("POST", "/api/v1/apps", {"name": "x", "owner": "nobody@example.com"}, "unknown user"),
        (
            "POST",
            "/api/v1/apps",
            {"name": "x", "owner": "alice@example.com", "llms": ["nope"]},
            "unknown LLM",
        ),
        ("POST", "/api/v1/llms", {"slug": "x", "vendor": "openai", "allowed_models": ["("]}, "invalid regex"),
        ("POST", "/api/v1/llms", {"slug": "gpt", "vendor": "openai"}, "exists already"),
        ("PATCH", "/api/v1/llms/1", {"timeout_s": -1}, "timeout_s"),
        ("POST", "/api/v1/llms", b"{not json", "not valid JSON"),
        ("POST", "/api/v1/llms", [1], "JSON object"),
    ]
    for method, path, body, reason in cases:
        kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
        response = gateway.admin(method, path, **kwargs)
        assert response.status_code in (400, 409), (path, body, response.text)
        assert reason in response.json()["error"]["message"], (body, response.text)


def test_admin_auth(gateway: Gateway, start_gateway: StartGateway, upstream_url: str) -> None:
    assert httpx.get(gateway.admin_url + "/api/v1/llms").status_code == 401
    bad = httpx.get(gateway.admin_url + "/api/v1/llms", headers={"authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(gateway.admin_url + "/openapi.json").status_code == 200
    gateway.admin(
        "POST",
        "/api/v1/users",
        json={"email": "root@example.com", "role": "admin", "api_key": "adm-user-key-1"},
    )
    gateway.admin("POST", "/api/v1/users", json={"email": "dev@example.com", "api_key": "dev-user-key-1"})
    as_admin = httpx.get(
        gateway.admin_url + "/api/v1/llms", headers={"authorization": "Bearer adm-user-key-1"}
    )
    as_dev = httpx.get(gateway.admin_url + "/api/v1/llms", headers={"authorization": "Bearer dev-user-key-1"})
    assert as_admin.status_code == 200 and as_dev.status_code == 403
    assert ADMIN_TOKEN not in gateway.output()


def test_openapi_document(gateway: Gateway) -> None:
    doc = httpx.get(gateway.admin_url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/v1/llms", "/api/v1/apps/{id}", "/api/v1/analytics/usage"} <= set(doc["paths"])
    assert "Llm" in doc["components"]["schemas"]


def _traffic(gateway: Gateway) -> None:
    gateway.admin(
        "POST",
        "/api/v1/apps",
        json={
            "name": "second",
            "owner": "alice@example.com",
            "llms": ["gpt"],
            "api_key": "tg-second-app-key",
        },
    )
    for key, n in ((APP_KEY, 3), ("tg-second-app-key", 2)):
        for _ in range(n):
            gateway.openai(key=key).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        gateway.openai(key="tg-bad").chat.completions.create(model="gpt-4o-mini", messages=HELLO)


def test_interactions_filters_and_limit(gateway: Gateway) -> None:
    _traffic(gateway)
    assert len(gateway.records(expect=6)) == 6
    records = gateway.records()
    timestamps = [r["timestamp"] for r in records]
    assert timestamps == sorted(timestamps, reverse=True)  # newest first
    app_id = next(r["app_id"] for r in records if r["app_name"] == "second")
    assert len(gateway.records(app="second")) == 2 == len(gateway.records(app=str(app_id)))
    assert len(gateway.records(user="alice@example.com")) == 5
    assert len(gateway.records(llm="gpt")) == 6
    assert (
        len(gateway.admin("GET", "/api/v1/analytics/interactions", params={"limit": 2}).json()["data"]) == 2
    )
    huge = gateway.admin("GET", "/api/v1/analytics/interactions", params={"limit": 10**9})
    assert huge.status_code == 200 and len(huge.json()["data"]) == 6  # clamped, never refused
    future = gateway.admin("GET", "/api/v1/analytics/interactions", params={"since": "2999-01-01T00:00:00Z"})
    assert future.json()["data"] == []
    past = gateway.admin("GET", "/api/v1/analytics/interactions", params={"until": "2000-01-01"})
    assert past.json()["data"] == []
    bad = gateway.admin("GET", "/api/v1/analytics/interactions", params={"since": "yesterday"})
    assert bad.status_code == 400


def test_usage_group_by(gateway: Gateway) -> None:
    _traffic(gateway)
    gateway.records(expect=6)
    by_app = {row["group"]: row for row in _usage(gateway, "app")}
    assert by_app["app-one"]["requests"] == 3 and by_app["second"]["requests"] == 2
    assert by_app[""]["errors"] == 1 and by_app[""]["id"] is None
    row = by_app["app-one"]
    assert isinstance(row["id"], int) and row["errors"] == 0 and row["cost"] > 0
    assert row["total_tokens"] == row["prompt_tokens"] + row["response_tokens"]
    assert 0 < row["latency_p50_ms"] <= row["latency_p95_ms"]
    assert {r["group"] for r in _usage(gateway, "user")} == {"alice@example.com", ""}
    assert {r["group"] for r in _usage(gateway, "model")} == {"gpt-4o-mini"}
    (llm,) = _usage(gateway, "llm")
    assert (llm["group"], llm["requests"], llm["errors"]) == ("gpt", 6, 1)
    (day,) = _usage(gateway, "day")
    assert day["group"] == time.strftime("%Y-%m-%d", time.gmtime()) and day["id"] is None
    assert gateway.admin("GET", "/api/v1/analytics/usage", params={"group_by": "nope"}).status_code == 400


def _usage(gateway: Gateway, group_by: str) -> list[dict[str, Any]]:
    response = gateway.admin("GET", "/api/v1/analytics/usage", params={"group_by": group_by})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_bootstrap_again_keeps_ids(start_gateway: StartGateway, upstream_url: str, tmp_path: Any) -> None:
    config = base_config(upstream_url)
    config["apps"].append({"name": "generated", "owner": "alice@example.com", "llms": ["gpt"]})
    first = start_gateway(config)
    ids = {kind: [e["id"] for e in first.admin("GET", f"/api/v1/{kind}").json()["data"]] for kind in NEW}
    assert "app 'generated': generated API key tg-" in first.output()
    first.stop()
    again = start_gateway(config, "--db", first.db_url)
    assert {
        kind: [e["id"] for e in again.admin("GET", f"/api/v1/{kind}").json()["data"]] for kind in NEW
    } == ids
    assert "generated API key" not in again.output()  # generated once, kept since
