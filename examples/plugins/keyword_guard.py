#!/usr/bin/env python3
"""A Tollgate filter plugin: refuses requests that mention a keyword, masks words in answers.

filters:
  - name: keyword-guard
    phase: post_auth                  # and/or a second filter with phase: response
    kind: plugin:examples/plugins/keyword_guard.py
    config: {keywords: [project-x], mask: [internal], timeout_ms: 100, fail: closed}
"""

from typing import Any

from pipeline.plugins.sdk import serve
from pipeline.sdk import FilterCall, Verdict


def mask(value: Any, words: list[str]) -> Any:
    """`value` with every word of `words` in its strings replaced by asterisks."""
    if isinstance(value, str):
        for word in words:
            value = value.replace(word, "*" * len(word))
        return value
    if isinstance(value, list):
        return [mask(item, words) for item in value]
    if isinstance(value, dict):
        return {key: mask(item, words) for key, item in value.items()}
    return value


def keyword_guard(call: FilterCall) -> Verdict | None:
    if call.phase == "response":
        words = call.config.get("mask", [])
        masked = mask(call.body, words)
        return Verdict.rewrite(masked) if masked != call.body else None
    text = str(call.body).lower()
    for keyword in call.config.get("keywords", []):
        if keyword.lower() in text:
            return Verdict.block("the request mentions a restricted keyword")
    return None


if __name__ == "__main__":
    serve(keyword_guard)
