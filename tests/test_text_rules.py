"""Text rules (pipeline/text.py) and where texts are in vendor bodies (pipeline/slots.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.base import Span
from pipeline.slots import answer_slots, answer_texts, request_texts
from pipeline.text import BlockList, PatternRule, PiiRule, config_problems, mask
from pipeline.textstream import merge_spans

PII = PiiRule("pii", {})


def labels(rule: Any, text: str) -> list[tuple[str, str]]:
    return [(label, text[start:end]) for start, end, label in rule.find(text)]


# (id, text, the (label, matched text) pairs expected)
POSITIVES = [
    (
        "email",
        "write to john.doe+news@mail.example.co.uk today",
        [("EMAIL", "john.doe+news@mail.example.co.uk")],
    ),
    ("email-end-of-sentence", "Mail: a.b@example.com.", [("EMAIL", "a.b@example.com")]),
    ("card-spaces", "card 4111 1111 1111 1111 exp", [("CREDIT_CARD", "4111 1111 1111 1111")]),
    ("card-dashes", "card 5555-5555-5555-4444.", [("CREDIT_CARD", "5555-5555-5555-4444")]),
    ("card-plain", "pay with 4012888888881881", [("CREDIT_CARD", "4012888888881881")]),
    ("card-amex", "amex 3782 822463 10005", [("CREDIT_CARD", "3782 822463 10005")]),
    ("iban-spaced", "IBAN DE89 3704 0044 0532 0130 00 please", [("IBAN", "DE89 3704 0044 0532 0130 00")]),
    ("iban-compact", "to NL91ABNA0417164300.", [("IBAN", "NL91ABNA0417164300")]),
    ("iban-letters", "GB82 WEST 1234 5698 7654 32", [("IBAN", "GB82 WEST 1234 5698 7654 32")]),
    ("ipv4", "host 192.168.1.20 is up", [("IP", "192.168.1.20")]),
    ("ipv4-port", "at 10.0.0.1:8080.", [("IP", "10.0.0.1")]),
    ("ipv6-compressed", "ping 2001:db8::1 now", [("IP", "2001:db8::1")]),
    (
        "ipv6-full",
        "addr 2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        [("IP", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")],
    ),
    ("ipv6-mapped", "via ::ffff:192.0.2.1.", [("IP", "::ffff:192.0.2.1")]),
    ("ipv6-link-local", "fe80::1", [("IP", "fe80::1")]),
    ("ssn", "SSN 123-45-6789.", [("US_SSN", "123-45-6789")]),
    ("phone-us-intl", "call +1 415 555 0132 now", [("PHONE", "+1 415 555 0132")]),
    ("phone-uk-intl", "call +44 20 7946 0958", [("PHONE", "+44 20 7946 0958")]),
    ("phone-area", "call (415) 555-0132.", [("PHONE", "(415) 555-0132")]),
    ("phone-dashes", "call 415-555-0132", [("PHONE", "415-555-0132")]),
    ("phone-dots", "call 415.555.0132.", [("PHONE", "415.555.0132")]),
    ("phone-spaces", "call 415 555 0132", [("PHONE", "415 555 0132")]),
    ("phone-trunk", "ring 020 7946 0958", [("PHONE", "020 7946 0958")]),
    ("phone-local", "ext 555-0132", [("PHONE", "555-0132")]),
    ("phone-in-parentheses", "(call +1 415 555 0132)", [("PHONE", "+1 415 555 0132")]),
    ("phone-trunk-in-parentheses", "call +44 (0)20 7946 0958.", [("PHONE", "+44 (0)20 7946 0958")]),
    ("phone-after-date", "on 2024-01-15 415-555-0132", [("PHONE", "415-555-0132")]),
    ("ip-after-version", "v3.11.7 on 8.8.8.8", [("IP", "8.8.8.8")]),
    (
        "secret-openai",
        "key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t done",
        [("SECRET", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t")],
    ),
    (
        "secret-anthropic",
        "sk-ant-api03-Xy7zAb3dEf6hIj9kLm2nOp5q",
        [("SECRET", "sk-ant-api03-Xy7zAb3dEf6hIj9kLm2nOp5q")],
    ),
    ("secret-aws", "id AKIAIOSFODNN7EXAMPLE,", [("SECRET", "AKIAIOSFODNN7EXAMPLE")]),
    (
        "secret-github",
        "ghp_1a2b3c4d5e6f7g8h9i0jAbCdEfGhIjKlMnOp",
        [("SECRET", "ghp_1a2b3c4d5e6f7g8h9i0jAbCdEfGhIjKlMnOp")],
    ),
    (
        "secret-github-pat",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        [("SECRET", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz")],
    ),
    (
        "secret-slack",
        "xoxb-123456789012-1234567890123-AbCdEf",
        [("SECRET", "xoxb-123456789012-1234567890123-AbCdEf")],
    ),
    (
        "secret-google",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        [("SECRET", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q")],
    ),
    (
        "secret-bearer",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.Zm9v",
        [("SECRET", "eyJhbGciOiJIUzI1NiJ9.e30.Zm9v")],
    ),
    ("secret-assigned", "api_key=Zx81kLq02mNb93Vc", [("SECRET", "Zx81kLq02mNb93Vc")]),
    ("secret-env", "OPENAI_API_KEY=abc123DEF456ghi789JKL", [("SECRET", "abc123DEF456ghi789JKL")]),
    ("secret-json", '{"client_secret": "9fK2mQ7xL4pR8vT1wZ6b"}', [("SECRET", "9fK2mQ7xL4pR8vT1wZ6b")]),
    ("secret-password", "password: hunter2Hunter2XYZ9!", [("SECRET", "hunter2Hunter2XYZ9")]),
    ("secret-url", "GET /v1?token=a1B2c3D4e5F6g7H8i9", [("SECRET", "a1B2c3D4e5F6g7H8i9")]),
]

NEGATIVES = [
    ("card-luhn", "card 4111 1111 1111 1112"),
    ("card-too-long", "ref 41111111111111111111111"),
    ("card-zeros", "card 0000 0000 0000 0000"),
    ("card-odd-groups", "ref 4111 11 1111 111111 ok"),
    ("card-years", "in 2024 2025 2026 2027 and 2028"),
    ("iban-checksum", "IBAN DE89 3704 0044 0532 0130 01"),
    ("iban-lowercase", "de89370400440532013000"),
    ("ipv4-octet", "bad 999.1.1.1 and 256.1.1.1"),
    ("ipv4-five-parts", "version 1.2.3.4.5"),
    ("ipv4-three-parts", "version 3.11.7"),
    ("ipv4-leading-zero", "date 01.02.03.04"),
    ("time", "at 12:30:45 and 9:15"),
    ("cpp", "std::vector<int> a::b"),
    ("hex-words", "cafe::beef"),
    ("ssn-area-000", "000-12-3456"),
    ("ssn-area-666", "666-12-3456"),
    ("ssn-area-9xx", "912-12-3456"),
    ("ssn-group-00", "123-00-4567"),
    ("ssn-serial-0000", "123-45-0000"),
    ("ssn-longer", "1234-56-7890"),
    ("years", "In 2023 and 2024, then 1999-2005"),
    ("prices", "It costs $1,299.99, or 15% off, about 12345 units"),
    ("dates", "on 2024-01-15, 15.01.2024 and 01.02.2023"),
    ("order", "order #12345678 shipped"),
    ("long-digits", "hash 84759203847561029384756"),
    ("phone-in-longer-run", "ref 415-555-0132-99"),
    ("uuid", "request 123e4567-e89b-12d3-a456-426614174000 failed"),
    ("email-no-tld", "user@localhost or @mention"),
    ("sk-inside-word", "the risk-adjusted-return-calculation-model1 works"),
    ("password-prose", "Reset your password: click the link below."),
    ("key-prose", "The key: consistency matters more than speed."),
    ("placeholder", "api_key=YOUR_API_KEY_GOES_HERE"),
    ("monkey", "monkey: a1b2c3d4e5f6g7h8i9j0"),
    ("tokens-count", "tokens: 1234567890123456"),
    ("prose", "The quick brown fox jumps over the lazy dog. State-of-the-art models summarise notes."),
    ("empty", ""),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in POSITIVES], ids=[c[0] for c in POSITIVES])
def test_pii_finds(text: str, expected: list[tuple[str, str]]) -> None:
    assert labels(PII, text) == expected


@pytest.mark.parametrize("text", [c[1] for c in NEGATIVES], ids=[c[0] for c in NEGATIVES])
def test_pii_leaves(text: str) -> None:
    assert PII.find(text) == []


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("card 6011 0009 9013 9424", "CREDIT_CARD"),  # "0009 9013 9424" alone would be a phone
        ("IBAN DE89 3704 0044 0532 0130 00", "IBAN"),  # "0044 0532 0130 00" alone would be a phone
    ],
)
def test_strong_entities_win_over_phone(text: str, label: str) -> None:
    assert [span.label for span in PII.find(text)] == [label]


def test_pii_several_in_order() -> None:
    text = "Mail a@example.com, call 415-555-0132, SSN 123-45-6789, host 10.1.2.3."
    assert [label for label, _ in labels(PII, text)] == ["EMAIL", "PHONE", "US_SSN", "IP"]
    assert mask(text, PII.find(text)) == (
        "Mail [REDACTED:EMAIL], call [REDACTED:PHONE], SSN [REDACTED:US_SSN], host [REDACTED:IP]."
    )


def test_pii_entities_subset_and_action() -> None:
    rule = PiiRule("emails", {"entities": ["email"], "action": "block"})
    assert rule.action == "block" and rule.holdback >= 64
    assert labels(rule, "a@example.com 415-555-0132 4111111111111111") == [("EMAIL", "a@example.com")]
    assert PiiRule("p", {}).action == "mask"


def test_pii_non_ascii_text_keeps_offsets() -> None:
    text = "Grüße 🙂 an jürgen@example.de, Tel. +49 30 1234 5678 – danke"
    assert labels(PII, text) == [("EMAIL", "jürgen@example.de"), ("PHONE", "+49 30 1234 5678")]


def test_mask_and_merge() -> None:
    assert mask("abc", []) == "abc"
    assert mask("my a@b.co x", [Span(3, 9, "EMAIL")]) == "my [REDACTED:EMAIL] x"
    merged = merge_spans([Span(5, 9, "B"), Span(0, 6, "A"), Span(0, 3, "C"), Span(12, 14, "D")])
    assert merged == [Span(0, 9, "A"), Span(12, 14, "D")]


def test_block_list_keywords_whole_words_any_case() -> None:
    rule = BlockList("deny", {"keywords": ["secret", "top secret", "C++"]})
    assert rule.action == "block"
    assert labels(rule, "This is SECRET.") == [("DENY", "SECRET")]
    assert labels(rule, "a Top Secret plan") == [("DENY", "Top Secret")]
    assert labels(rule, "we write c++ daily") == [("DENY", "c++")]
    assert rule.find("my secretary and secrets, top_secret") == []


def test_block_list_many_keywords() -> None:
    words = [f"word{i}" for i in range(20)] + ["foo", "foo bar"]
    rule = BlockList("deny", {"keywords": words})
    assert labels(rule, "x Foo Barx and WORD7") == [("DENY", "Foo"), ("DENY", "WORD7")]
    assert rule.find("word77 foobar") == []


def test_block_list_patterns() -> None:
    rule = BlockList("sql", {"patterns": [r"(?i)drop\s+table", "rm -rf /"], "keywords": ["nuke"]})
    assert labels(rule, "please DROP  Table users") == [("SQL", "DROP  Table")]
    assert labels(rule, "run rm -rf / now, NUKE") == [("SQL", "rm -rf /"), ("SQL", "NUKE")]
    case_sensitive = BlockList("b", {"patterns": ["Falcon"]})
    assert case_sensitive.find("falcon") == [] and case_sensitive.find("Falcon") != []


def test_pattern_rule() -> None:
    rule = PatternRule("codename", {"patterns": [r"Project\s+Falcon", r"FALCON-\d+"]})
    assert (rule.action, rule.holdback) == ("mask", 128)
    text = "Project Falcon ships FALCON-42 and FALCON-7."
    assert (
        mask(text, rule.find(text))
        == "[REDACTED:CODENAME] ships [REDACTED:CODENAME] and [REDACTED:CODENAME]."
    )
    overlapping = PatternRule("x", {"patterns": ["foo", "foobar"], "action": "block", "holdback": 16})
    assert labels(overlapping, "a foobar") == [("X", "foobar")]  # earliest, then longest
    assert (overlapping.action, overlapping.holdback) == ("block", 16)
    assert PatternRule("e", {"patterns": ["x*"]}).find("abc") == []  # empty matches are no spans


@pytest.mark.parametrize(
    ("kind", "config", "problems"),
    [
        ("pii_redact", {}, []),
        ("pii_redact", {"entities": ["email", "ip"], "action": "block"}, []),
        ("pii_redact", {"entities": ["email", "passport"]}, ["unknown entity 'passport'"]),
        ("pii_redact", {"entities": "email"}, ["'entities' must be a non-empty list"]),
        ("pii_redact", {"entities": []}, ["'entities' must be a non-empty list"]),
        ("pii_redact", {"action": "drop"}, ["'action' must be mask or block"]),
        ("regex_block", {"patterns": ["a+"], "keywords": ["b"]}, []),
        ("regex_block", {"keywords": ["b"], "holdback": 64}, []),
        ("regex_block", {}, ["needs 'patterns' or 'keywords'"]),
        ("regex_block", {"patterns": ["(unclosed"]}, ["invalid regex '(unclosed'"]),
        ("regex_block", {"patterns": "abc"}, ["'patterns' must be a list of strings"]),
        ("regex_block", {"keywords": [1, 2]}, ["'keywords' must be a list of strings"]),
        ("regex_block", {"keywords": [" "]}, ["keyword ' ' is blank"]),
        ("regex_block", {"patterns": ["a"], "action": "mask"}, ["regex_block always blocks"]),
        ("regex_block", {"patterns": ["a"], "holdback": 0}, ["'holdback' must be a positive number"]),
        ("response_regex", {"patterns": ["x"], "action": "block"}, []),
        ("response_regex", {}, ["needs 'patterns'"]),
        ("response_regex", {"patterns": ["a*"]}, ["regex 'a*' matches the empty string"]),
        ("response_regex", {"patterns": ["x"], "action": "redact"}, ["'action' must be mask or block"]),
        ("max_prompt_tokens", {"max": 3}, []),
    ],
)
def test_config_problems(kind: str, config: dict[str, Any], problems: list[str]) -> None:
    found = config_problems(kind, config)
    assert len(found) == len(problems), found
    for message, start in zip(found, problems, strict=True):
        assert message.startswith(start), message


# --- where the texts are --------------------------------------------------------------------------------


def texts(slots: Any) -> list[str]:
    return [container[key] for container, key in slots]


REQUESTS = [
    (
        "openai-chat",
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "s1"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "u1"}, {"type": "image_url", "image_url": {}}],
                },
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "content": "t1", "tool_call_id": "x"},
            ],
        },
        ["s1", "u1", "t1"],
    ),
    (
        "anthropic",
        {
            "system": [{"type": "text", "text": "s1"}],
            "messages": [
                {"role": "user", "content": "u1"},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "a", "content": "r1"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "b",
                            "content": [{"type": "text", "text": "r2"}],
                        },
                        {"type": "text", "text": "u2"},
                    ],
                },
            ],
        },
        ["s1", "u1", "r1", "r2", "u2"],
    ),
    ("anthropic-system-string", {"system": "s1", "messages": []}, ["s1"]),
    (
        "gemini",
        {
            "systemInstruction": {"parts": [{"text": "s1"}]},
            "contents": [{"role": "user", "parts": [{"text": "u1"}, {"inlineData": {}}, {"text": "u2"}]}],
        },
        ["u1", "u2", "s1"],
    ),
    ("gemini-snake", {"system_instruction": {"parts": [{"text": "s1"}]}, "contents": []}, ["s1"]),
    ("gemini-embed", {"content": {"parts": [{"text": "e1"}]}}, ["e1"]),
    ("gemini-batch-embed", {"requests": [{"model": "m", "content": {"parts": [{"text": "e1"}]}}]}, ["e1"]),
    (
        "bedrock-converse",
        {
            "system": [{"text": "s1"}],
            "messages": [
                {"role": "user", "content": [{"text": "u1"}, {"toolResult": {"content": [{"text": "r1"}]}}]}
            ],
        },
        ["s1", "u1", "r1"],
    ),
    ("embeddings-string", {"model": "m", "input": "e1"}, ["e1"]),
    ("embeddings-list", {"model": "m", "input": ["e1", "e2", [1, 2]]}, ["e1", "e2"]),
    ("ollama-generate", {"model": "m", "prompt": "p1", "system": "s1"}, ["s1", "p1"]),
    ("completions-list", {"prompt": ["p1", "p2"]}, ["p1", "p2"]),
    ("titan-embed", {"inputText": "e1"}, ["e1"]),
    ("cohere-embed", {"texts": ["e1", "e2"]}, ["e1", "e2"]),
    (
        "responses-api",
        {
            "instructions": "i1",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "u1"}]}],
        },
        ["i1", "u1"],
    ),
    ("not-a-dict", ["a"], []),
    ("no-texts", {"model": "m", "messages": "oops"}, []),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in REQUESTS], ids=[c[0] for c in REQUESTS])
def test_request_texts(doc: Any, expected: list[str]) -> None:
    assert texts(request_texts(doc)) == expected


def test_request_slots_can_be_assigned() -> None:
    doc = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}], "input": ["b"]}
    for container, key in request_texts(doc):
        container[key] = container[key].upper()
    assert doc == {"messages": [{"role": "user", "content": [{"type": "text", "text": "A"}]}], "input": ["B"]}


ANSWERS = [
    (
        "openai",
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a1"}}]},
        [(("choice", 0), "a1")],
    ),
    (
        "openai-chunk",
        {"choices": [{"index": 1, "delta": {"content": "d1"}}, {"index": 0, "delta": {"role": "assistant"}}]},
        [(("choice", 1), "d1")],
    ),
    ("openai-completions", {"choices": [{"index": 0, "text": "t1"}]}, [(("choice", 0), "t1")]),
    (
        "anthropic",
        {
            "content": [
                {"type": "text", "text": "a1"},
                {"type": "tool_use", "input": {}},
                {"type": "text", "text": "a2"},
            ]
        },
        [(("block", 0), "a1"), (("block", 2), "a2")],
    ),
    (
        "anthropic-delta",
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "d1"}},
        [(("block", 2), "d1")],
    ),
    ("anthropic-json-delta", {"type": "content_block_delta", "index": 1, "delta": {"partial_json": "{"}}, []),
    ("anthropic-message-delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, []),
    (
        "gemini",
        {
            "candidates": [
                {"content": {"parts": [{"text": "g1"}, {"functionCall": {}}, {"text": "g2"}]}, "index": 0}
            ]
        },
        [(("candidate", 0), "g1"), (("candidate", 0), "g2")],
    ),
    ("ollama-chat", {"message": {"role": "assistant", "content": "o1"}, "done": False}, [("message", "o1")]),
    ("ollama-generate", {"response": "o1", "done": False}, [("message", "o1")]),
    (
        "bedrock",
        {"output": {"message": {"role": "assistant", "content": [{"text": "b1"}]}}, "stopReason": "end_turn"},
        [(("block", 0), "b1")],
    ),
    ("bedrock-delta", {"contentBlockIndex": 1, "delta": {"text": "b1"}}, [(("block", 1), "b1")]),
    (
        "responses-delta",
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "r1"},
        [(("output", 0, 0), "r1")],
    ),
    ("usage-chunk", {"choices": [], "usage": {"total_tokens": 3}}, []),
    ("not-a-dict", [1], []),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in ANSWERS], ids=[c[0] for c in ANSWERS])
def test_answer_slots(doc: Any, expected: list[tuple[Any, str]]) -> None:
    assert [(channel, container[key]) for channel, container, key in answer_slots(doc)] == expected
    assert texts(answer_texts(doc)) == [text for _, text in expected]
