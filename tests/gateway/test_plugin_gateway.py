"""gRPC plugin filters through the real gateway: the example plugin, a plugin that crashes mid-traffic
(restarted), fail-closed and fail-open, and a slow plugin that does not stall other requests."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import StartGateway
from tests.support import APP_KEY, base_config

pytestmark = pytest.mark.one_store  # gRPC plugins: the same on either store

ROOT = Path(__file__).resolve().parents[2]
CHAOS = f"plugin:{sys.executable} {ROOT / 'tests' / 'plugins' / 'chaos.py'}"
GUARD = f"plugin:{ROOT / 'examples' / 'plugins' / 'keyword_guard.py'}"


def _start(start_gateway: StartGateway, upstream_url: str, filters: list[dict[str, Any]]) -> Any:
    config = base_config(upstream_url, filters=filters)
    config["llms"][0]["filters"] = [f["name"] for f in filters]
    return start_gateway(config)


def _post(gw: Any, **extra: Any) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], **extra}
    return httpx.post(
        f"{gw.url}/openai/gpt/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {APP_KEY}"},
        timeout=30,
    )


def _chaos(fail: str, **config: Any) -> list[dict[str, Any]]:
    """The chaos plugin in post_auth, then a filter that strips its `say` field before the upstream."""
    return [
        {"name": "chaos", "phase": "post_auth", "kind": CHAOS, "config": {"fail": fail, **config}},
        {"name": "unsay", "phase": "post_auth", "kind": "strip_fields", "config": {"fields": ["say"]}},
    ]


def test_the_example_plugin_blocks_requests_and_masks_answers(start_gateway, upstream, upstream_url):
    config = {"keywords": ["project-x"], "mask": ["internal"]}
    filters = [
        {"name": "guard", "phase": "post_auth", "kind": GUARD, "config": config},
        {"name": "guard-out", "phase": "response", "kind": GUARD, "config": config},
    ]
    gw = _start(start_gateway, upstream_url, filters)
    client = gw.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "status of Project-X?"}]
        )
    assert caught.value.body["code"] == "content_blocked" and "guard" in caught.value.body["message"]
    messages = [{"role": "user", "content": "an internal memo"}]
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert answer.choices[0].message.content == "Mock answer to: an ******** memo"
    assert upstream.requests[-1].json()["messages"][0]["content"] == "an internal memo"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "internal" not in streamed


def test_a_plugin_that_crashes_mid_traffic_is_restarted(start_gateway, upstream, upstream_url):
    gw = _start(start_gateway, upstream_url, _chaos("closed", timeout_ms=500))
    assert _post(gw).status_code == 200
    statuses: list[int] = []

    def traffic() -> None:
        for _ in range(40):
            statuses.append(_post(gw).status_code)
            time.sleep(0.05)

    background = threading.Thread(target=traffic)
    background.start()
    crashed = _post(gw, say="crash")
    background.join()
    assert crashed.status_code == 503 and crashed.json()["error"]["code"] == "filter_unavailable"
    assert "chaos" in crashed.json()["error"]["message"]
    assert set(statuses) <= {200, 503} and statuses[-1] == 200  # fail-closed while down, then back
    deadline = time.monotonic() + 10
    while _post(gw).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _post(gw).status_code == 200
    metrics = httpx.get(f"{gw.url}/metrics").text
    restarts = [line for line in metrics.splitlines() if line.startswith("tollgate_plugin_restarts{")]
    assert restarts and float(restarts[0].rsplit(" ", 1)[1]) >= 1
    assert "exited" in gw.output() or "restart" in gw.output().lower()


def test_fail_open_lets_requests_through_a_slow_plugin_and_others_are_not_stalled(
    start_gateway, upstream, upstream_url
):
    gw = _start(start_gateway, upstream_url, _chaos("open", timeout_ms=200, sleep_s=3))
    assert _post(gw).status_code == 200
    slow: list[httpx.Response] = []
    started = time.monotonic()
    background = threading.Thread(target=lambda: slow.append(_post(gw, say="slow")))
    background.start()
    fast = [time.monotonic()]
    for _ in range(20):
        assert _post(gw).status_code == 200
    fast.append(time.monotonic())
    background.join()
    assert slow[0].status_code == 200  # fail-open: past its deadline, the plugin is skipped
    assert time.monotonic() - started < 2.5  # the slow plugin was given 200 ms, not 3 s
    assert fast[1] - fast[0] < 2.5  # 20 requests beside the slow one, not queued behind it
    assert "say" not in upstream.requests[-1].json()


def test_fail_closed_refuses_a_request_the_plugin_does_not_answer_in_time(
    start_gateway, upstream, upstream_url
):
    gw = _start(start_gateway, upstream_url, _chaos("closed", timeout_ms=200, sleep_s=3))
    started = time.monotonic()
    response = _post(gw, say="slow")
    assert time.monotonic() - started < 2
    assert response.status_code == 503 and response.json()["error"]["code"] == "filter_unavailable"
    assert _post(gw).status_code == 200
    record = next(r for r in gw.records(expect=2) if r["status_code"] == 503)
    assert record["blocked_by"] == "chaos"
