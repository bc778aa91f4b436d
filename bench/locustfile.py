"""Load Tollgate the way SREs already do: locust with FastHttpUser.

    locust -f bench/locustfile.py --host http://127.0.0.1:9090 --headless -u 64 -r 16 -t 60s

Environment: TOLLGATE_BENCH_KEY (default: the example config's app key tg-demo-0001), TOLLGATE_BENCH_LLM
(default gpt), TOLLGATE_BENCH_MODEL (default gpt-4o-mini), TOLLGATE_BENCH_STREAM_SHARE (0..1, default 0.2).
"""

from __future__ import annotations

import os
import random
from typing import ClassVar

from locust import FastHttpUser, between, task

KEY = os.environ.get("TOLLGATE_BENCH_KEY", "tg-demo-0001")
LLM = os.environ.get("TOLLGATE_BENCH_LLM", "gpt")
MODEL = os.environ.get("TOLLGATE_BENCH_MODEL", "gpt-4o-mini")
STREAM_SHARE = float(os.environ.get("TOLLGATE_BENCH_STREAM_SHARE", "0.2"))
PROMPTS = ["Hello, how are you today?", "Summarise the plot of Hamlet in one line.", "What is 17 * 23?"]


class ChatUser(FastHttpUser):
    wait_time = between(0, 0)
    headers: ClassVar[dict[str, str]] = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}

    @task
    def chat(self) -> None:
        stream = random.random() < STREAM_SHARE
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": random.choice(PROMPTS)}],
            "stream": stream,
        }
        name = "chat (stream)" if stream else "chat"
        with self.client.post(
            f"/openai/{LLM}/v1/chat/completions",
            json=body,
            headers=self.headers,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif stream and not response.text.rstrip().endswith("data: [DONE]"):
                response.failure("stream did not end with [DONE]")
