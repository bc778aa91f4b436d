"""Text rules over answers: complete answers, request bodies, and streams rewritten with a holdback."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ContentBlocked
from pipeline.base import TextRule
from pipeline.text import BlockList, PatternRule, PiiRule
from pipeline.textstream import ResponseTextStream, filter_answer, mask_request, redact

PII = PiiRule("pii", {})
CODENAME = PatternRule("codename", {"patterns": [r"Project Falcon"]})
TEXT = (
    "Sure! Write to john.doe@example.com or call +1 415 555 0132 — Grüße 🙂. Card 4111 1111 1111 1111, "
    "IBAN DE89 3704 0044 0532 0130 00. Project Falcon ships soon; its server is 10.20.30.40."
)
EXPECTED = (
    "Sure! Write to [REDACTED:EMAIL] or call [REDACTED:PHONE] — Grüße 🙂. Card [REDACTED:CREDIT_CARD], "
    "IBAN [REDACTED:IBAN]. [REDACTED:CODENAME] ships soon; its server is [REDACTED:IP]."
)
ROLE = b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}\n\n'
DONE = b"data: [DONE]\n\n"


def chunk(text: str, index: int = 0) -> bytes:
    return (
        b"data: "
        + orjson.dumps({"id": "c", "choices": [{"index": index, "delta": {"content": text}}]})
        + b"\n\n"
    )


def openai_stream(pieces: list[str]) -> bytes:
    return ROLE + b"".join(chunk(p) for p in pieces) + USAGE + DONE


def pieces_of(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def run(rules: list[TextRule], data: bytes, cuts: list[int], framing: Any = "sse") -> bytes:
    stream = ResponseTextStream(rules, framing)
    out, pos = [], 0
    for cut in [*sorted(cuts), len(data)]:
        out.append(stream.feed(data[pos:cut]))
        pos = max(pos, cut)
    out.append(stream.finish())
    return b"".join(out)


def events(data: bytes) -> list[bytes]:
    return [e + b"\n\n" for e in data.split(b"\n\n") if e]


def contents(data: bytes) -> list[str]:
    """The delta content of each OpenAI chunk ("" for the others)."""
    found = []
    for event in events(data):
        doc = orjson.loads(event[6:]) if event.startswith(b"data: {") else {}
        found.append("".join(c["delta"].get("content", "") for c in doc.get("choices", [])))
    return found


def test_redact_and_complete_answers() -> None:
    assert redact(TEXT, [PII, CODENAME]) == EXPECTED
    assert redact("nothing here", [PII]) is None
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}}]}
    assert filter_answer(answer, [PII, CODENAME])
    assert answer["choices"][0]["message"]["content"] == EXPECTED
    assert not filter_answer({"choices": [{"message": {"content": "hi"}}]}, [PII])
    with pytest.raises(ContentBlocked) as blocked:
        filter_answer(
            {"content": [{"type": "text", "text": "Project Falcon"}]},
            [PII, BlockList("deny", {"keywords": ["falcon"]})],
        )
    assert blocked.value.filter == "deny" and "Falcon" not in blocked.value.message


def test_overlapping_rules_are_masked_as_one() -> None:
    rule = PatternRule("domain", {"patterns": [r"example\.com/\w+"]})
    assert redact("see a@example.com/path now", [PII, rule]) == "see [REDACTED:EMAIL] now"


def test_mask_request() -> None:
    doc = {"messages": [{"role": "user", "content": "mail a@example.com"}, {"role": "user", "content": "hi"}]}
    assert mask_request(doc, [PII])
    assert doc["messages"][0]["content"] == "mail [REDACTED:EMAIL]"
    assert not mask_request({"messages": [{"role": "user", "content": "hi"}]}, [PII])
    with pytest.raises(ContentBlocked):
        mask_request({"prompt": "DROP TABLE x"}, [BlockList("sql", {"patterns": [r"(?i)drop\s+table"]})])


def test_stream_unchanged_without_matches() -> None:
    data = openai_stream(pieces_of("Nothing to see here, just a plain answer about the weather. " * 5, 7))
    assert run([PII], data, [100, 101, 555]) == data
    assert ResponseTextStream([], "sse").feed(b"anything") == b"anything"


def test_stream_split_at_every_byte() -> None:
    data = openai_stream(pieces_of(TEXT, 9))
    whole = run([PII, CODENAME], data, [])
    assert "".join(contents(whole)) == EXPECTED
    assert events(whole)[0] == ROLE and events(whole)[-2:] == [USAGE, DONE]
    for cut in range(1, len(data)):
        assert run([PII, CODENAME], data, [cut]) == whole, cut


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=40),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
)
def test_stream_any_chunking_masks_as_the_whole_text(size: int, cuts: list[int]) -> None:
    data = openai_stream(pieces_of(TEXT, size))
    out = run([PII, CODENAME], data, [c % len(data) for c in cuts])
    assert "".join(contents(out)) == EXPECTED
    assert events(out)[0] == ROLE and events(out)[-2:] == [USAGE, DONE]


def test_match_split_across_three_events() -> None:
    pieces = ["Mail john.d", "oe@exam", "ple.com today."]
    out = run([PII], openai_stream(pieces), [])
    assert contents(out) == ["", "Mail [REDACTED:EMAIL]", "", " today.", "", ""]


def test_block_on_split_match() -> None:
    rule = PatternRule("falcon", {"patterns": ["Project Falcon"], "action": "block"})
    data = openai_stream(["Here is Proj", "ect Fal", "con. " + "x" * 300])
    stream = ResponseTextStream([rule], "sse")
    with pytest.raises(ContentBlocked) as blocked:
        stream.feed(data)
    assert blocked.value.filter == "falcon"
    stream = ResponseTextStream([rule], "sse")
    assert b"Fal" not in stream.feed(ROLE + chunk("Here is Proj") + chunk("ect Falcon"))
    with pytest.raises(ContentBlocked):
        stream.finish()  # the end of the stream settles the match


def test_block_straddling_text_already_sent() -> None:
    # a holdback shorter than the match: the start of it went out before the match could be seen
    rule = PatternRule("long", {"patterns": ["abcdefgh"], "action": "block", "holdback": 2})
    stream = ResponseTextStream([rule], "sse")
    assert b"ab" in stream.feed(chunk("x" * 40 + "ab") + chunk("cd"))
    with pytest.raises(ContentBlocked):
        stream.feed(chunk("efgh") + chunk("y" * 40))


def test_mask_straddling_text_already_sent_masks_the_rest() -> None:
    rule = PatternRule("long", {"patterns": ["abcdefgh"], "holdback": 2})
    first = chunk("x" * 40 + "ab") + chunk("cd")
    out = run([rule], first + chunk("efgh") + chunk("y" * 40), [len(first)])
    assert "".join(contents(out)) == "x" * 40 + "ab[REDACTED:LONG]" + "y" * 40


def test_block_not_triggered_by_a_match_that_does_not_last() -> None:
    rule = BlockList("deny", {"keywords": ["foo"]})
    assert contents(run([rule], openai_stream(["a foo", "bar b"]), [])) == ["", "a foo", "bar b", "", ""]


def test_events_without_text_keep_their_order() -> None:
    data = (
        b": keep-alive\n\n"
        + ROLE
        + chunk("mail a@exa")
        + b"event: ping\ndata: {}\n\n"
        + chunk("mple.com")
        + b"data: not json\n\n"
        + USAGE
        + DONE
    )
    out = run([PII], data, [5, 60, 61])
    assert events(out) == [
        b": keep-alive\n\n",
        ROLE,
        chunk("mail [REDACTED:EMAIL]"),
        b"event: ping\ndata: {}\n\n",
        chunk(""),
        b"data: not json\n\n",
        USAGE,
        DONE,
    ]


def test_anthropic_events_keep_their_event_lines() -> None:
    def delta(text: str) -> bytes:
        body = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        return b"event: content_block_delta\r\ndata: " + orjson.dumps(body) + b"\r\n\r\n"

    start = b'event: message_start\r\ndata: {"type":"message_start","message":{"content":[]}}\r\n\r\n'
    stop = b'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n'
    data = start + delta("SSN 123-") + delta("45-6789 ok") + stop
    out = run([PII], data, [len(start) + 7])
    assert out == start + delta("SSN [REDACTED:US_SSN]") + delta(" ok") + stop


def test_channels_are_masked_apart() -> None:
    data = chunk("a@exa", 0) + chunk("b@exa", 1) + chunk("mple.com", 0) + chunk("mple.org", 1) + DONE
    out = run([PII], data, [])
    texts: dict[int, str] = {0: "", 1: ""}
    for event in events(out)[:-1]:
        for choice in orjson.loads(event[6:])["choices"]:
            texts[choice["index"]] += choice["delta"]["content"]
    assert texts == {0: "[REDACTED:EMAIL]", 1: "[REDACTED:EMAIL]"}


def test_ndjson() -> None:
    def line(text: str, done: bool = False) -> bytes:
        return (
            orjson.dumps({"model": "m", "message": {"role": "assistant", "content": text}, "done": done})
            + b"\n"
        )

    data = line("call 415-55") + line("5-0132 now") + line("", True)
    out = run([PII], data, [3, 40], "ndjson")
    assert out == line("call [REDACTED:PHONE]") + line(" now") + line("", True)
    assert run([PII], data[:-1], [], "ndjson") == out[:-1]  # a last line without its newline


def test_utf8_split_inside_a_character() -> None:
    data = openai_stream(["Grüße 🙂 an a@example.com ✓"])
    emoji = data.index("🙂".encode())
    for cut in range(emoji, emoji + 4):
        out = run([PII], data, [cut])
        assert "".join(contents(out)) == "Grüße 🙂 an [REDACTED:EMAIL] ✓"


def test_long_secret_is_held_whole() -> None:
    key = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5q" * 10  # longer than the holdback
    out = run([PII], openai_stream(["key: ", *pieces_of(key, 7), " — keep it safe." + " " * 200]), [])
    assert "".join(contents(out)) == "key: [REDACTED:SECRET] — keep it safe." + " " * 200


SNIPPETS = [
    "a@example.com",
    "+1 415 555 0132",
    "(415) 555-0132",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "10.0.0.1",
    "2001:db8::1",
    "123-45-6789",
    "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t",
    "Project Falcon",
    "Falcon",
    "foobar",
    "2024",
    "12:30:45",
    "1.2.3.4.5",
    "Grüße 🙂",
    "x" * 60,
    "hello",
]
RULE_SETS = [
    [PII, CODENAME],
    [PatternRule("code", {"patterns": ["Falcon", r"foo\s?bar"], "holdback": 20})],
    [PiiRule("pii", {"entities": ["phone", "credit_card"]}), BlockList("deny", {"keywords": ["foobar"]})],
    [
        PiiRule("ssn", {"entities": ["us_ssn"], "action": "block"}),
        PiiRule("net", {"entities": ["email", "ip"]}),
    ],
]


@settings(max_examples=150, deadline=None)
@given(
    rules=st.sampled_from(RULE_SETS),
    texts=st.lists(
        st.lists(st.sampled_from(SNIPPETS), min_size=1, max_size=12).map(" ".join), min_size=2, max_size=2
    ),
    sizes=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=8),
    order=st.randoms(use_true_random=False),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
)
def test_stream_matches_the_whole_texts(
    rules: list[TextRule], texts: list[str], sizes: list[int], order: Any, cuts: list[int]
) -> None:
    """Two channels interleaved, cut anywhere: the same masks, or the same block, as the whole texts."""
    queues = []
    for index, text in enumerate(texts):
        pieces, pos = [], 0
        while pos < len(text):
            size = sizes[len(pieces) % len(sizes)]
            pieces.append(chunk(text[pos : pos + size], index))
            pos += size
        queues.append(pieces)
    data = b""
    while any(queues):
        data += order.choice([q for q in queues if q]).pop(0)
    data += DONE
    try:
        expected = [redact(text, rules) or text for text in texts]
    except ContentBlocked as blocked:
        with pytest.raises(ContentBlocked) as streamed:
            run(rules, data, [c % len(data) for c in cuts])
        assert streamed.value.filter == blocked.filter
        return
    out = run(rules, data, [c % len(data) for c in cuts])
    got = ["", ""]
    for event in events(out)[:-1]:
        for choice in orjson.loads(event[6:])["choices"]:
            got[choice["index"]] += choice["delta"]["content"]
    assert got == expected and events(out)[-1] == DONE
