"""Text rules (pipeline/base.py `TextRule`): PII entities (pipeline/pii.py), block lists and answer
patterns, found as spans; and `mask`, which replaces spans by [REDACTED:<label>]."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pipeline import pii
from pipeline.base import Action, Span
from pipeline.pii import ENTITIES, Hit, is_word

ACTIONS = ("mask", "block")
# A stream holds back this many characters so a match split across chunks is seen whole. It bounds every
# PII entity but secrets; a secret longer than this is still held whole while it grows at the end of the
# text, so the cap only bounds how far into a token its check (e.g. "has a digit") may need to look.
DEFAULT_HOLDBACK = 128


def mask(text: str, spans: Iterable[Span]) -> str:
    """`text` with each span replaced by [REDACTED:<label>] (spans sorted and non-overlapping)."""
    out = []
    pos = 0
    for start, end, label in spans:
        out.append(text[pos:start])
        out.append(f"[REDACTED:{label}]")
        pos = end
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _earliest_longest(hits: list[Hit]) -> list[Span]:
    hits.sort(key=lambda h: (h[0], -h[1]))
    out = []
    end = -1
    for start, stop, label in hits:
        if start >= end:
            out.append(Span(start, stop, label))
            end = stop
    return out


# --- rules ----------------------------------------------------------------------------------------------


class PiiRule:
    """`pii_redact`: the configured entities (all by default), masked as [REDACTED:EMAIL] etc., or blocked."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.action: Action = config.get("action", "mask")
        self.holdback = DEFAULT_HOLDBACK
        self._labels = frozenset(e.upper() for e in config.get("entities") or ENTITIES)

    def find(self, text: str) -> list[Span]:
        hits = pii.find(text, self._labels)
        return _earliest_longest(hits) if hits else []


class _RegexRule:
    # One regex per pattern, not one alternation of them all: Python's re skips ahead to a pattern's
    # literal prefix, which an alternation loses (2 KB of prose: 1-2 us a pattern, 50 us joined).
    action: Action

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.holdback = int(config.get("holdback", DEFAULT_HOLDBACK))
        self._label = name.upper()
        self._regexes = tuple(re.compile(p) for p in config.get("patterns") or ())

    def _hits(self, text: str) -> list[Hit]:
        label = self._label
        return [
            (m.start(), m.end(), label)
            for r in self._regexes
            for m in r.finditer(text)
            if m.end() > m.start()
        ]

    def find(self, text: str) -> list[Span]:
        hits = self._hits(text)
        return _earliest_longest(hits) if hits else []


class PatternRule(_RegexRule):
    """`response_regex`: the patterns, masked as [REDACTED:<NAME>] or blocked."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name, config)
        self.action = config.get("action", "mask")


class BlockList(_RegexRule):
    """`regex_block`: blocks a text matching a pattern or holding a keyword (a whole word, in any case)."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name, config)
        self.action = "block"
        self._words = tuple(sorted({k.lower() for k in config.get("keywords") or ()}, key=len, reverse=True))
        # Keywords are looked for in the lowered text (a case-insensitive regex cannot skip ahead): a few
        # with one str.find each, many with one alternation that finds where any of them starts.
        many = len(self._words) > 8
        self._any_word = re.compile("|".join(map(re.escape, self._words))) if many else None

    def find(self, text: str) -> list[Span]:
        hits = self._hits(text) if self._regexes else []
        if self._words:
            self._keywords(text, hits)
        return _earliest_longest(hits) if hits else []

    def _keywords(self, text: str, hits: list[Hit]) -> None:
        low = text.lower()
        if len(low) != len(text):  # a few characters lower to two: keep the offsets
            low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        n, label = len(text), self._label
        if self._any_word is None:
            for word in self._words:
                pos = 0
                while (i := low.find(word, pos)) >= 0:
                    pos = i + 1
                    e = i + len(word)
                    if not ((i and is_word(text[i - 1])) or (e < n and is_word(text[e]))):
                        hits.append((i, e, label))
            return
        pos = 0
        while (m := self._any_word.search(low, pos)) is not None:
            i = pos = m.start()
            pos += 1
            for word in self._words:  # the longest whole word starting here
                e = i + len(word)
                if low.startswith(word, i) and not (
                    (i and is_word(text[i - 1])) or (e < n and is_word(text[e]))
                ):
                    hits.append((i, e, label))
                    break


# --- configuration ----------------------------------------------------------------------------------------


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def config_problems(kind: str, config: dict[str, Any]) -> list[str]:
    """What is wrong with a pii_redact, regex_block or response_regex `config`, one line each."""
    problems: list[str] = []
    if kind not in ("pii_redact", "regex_block", "response_regex"):
        return problems
    action = config.get("action", "block" if kind == "regex_block" else "mask")
    if kind == "regex_block" and action != "block":
        problems.append("regex_block always blocks: 'action' can only be block")
    elif action not in ACTIONS:
        problems.append(f"'action' must be mask or block, not {action!r}")
    if kind == "pii_redact":
        entities = config.get("entities")
        if entities is not None and (not _strings(entities) or not entities):
            problems.append(f"'entities' must be a non-empty list of: {', '.join(ENTITIES)}")
        elif entities is not None:
            problems.extend(
                f"unknown entity '{e}' (known: {', '.join(ENTITIES)})" for e in entities if e not in ENTITIES
            )
        return problems
    holdback = config.get("holdback", DEFAULT_HOLDBACK)
    if not isinstance(holdback, int) or isinstance(holdback, bool) or holdback < 1:
        problems.append("'holdback' must be a positive number of characters")
    patterns = config.get("patterns", [])
    keywords = config.get("keywords", []) if kind == "regex_block" else []
    for field, value in (("patterns", patterns), ("keywords", keywords)):
        if not _strings(value):
            problems.append(f"'{field}' must be a list of strings")
    if not _strings(patterns) or not _strings(keywords):
        return problems
    if not patterns and not keywords:
        problems.append("needs 'patterns' or 'keywords'" if kind == "regex_block" else "needs 'patterns'")
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            problems.append(f"invalid regex {pattern!r}: {exc}")
            continue
        if regex.match("") is not None:
            problems.append(f"regex {pattern!r} matches the empty string")
    problems.extend(f"keyword {k!r} is blank" for k in keywords if not k.strip())
    return problems
