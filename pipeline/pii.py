"""PII entities found in a text: e-mail addresses, phone numbers, credit cards (Luhn-checked), IBANs
(mod-97-checked), IPv4 and IPv6 addresses, US SSNs and API-key-like secrets (`pii_redact`'s detectors).

These run over every prompt text and every answer, so each regex is compiled once and runs only where
cheap scans point: e-mail patterns at each "@", number patterns (cards, SSNs, IPs, phones) where 7 digits
or a dotted quad are close together, IBANs where two capitals precede two digits, IPv6 around "::" or
"h:h:", and secret patterns inside runs of 15 or more token characters. Those scans work on a bytes copy
of the text with digits turned into "0" and so on, where a literal is found at C speed.
"""

from __future__ import annotations

import ipaddress
import re

ENTITIES = ("email", "phone", "credit_card", "iban", "ip", "us_ssn", "secret")
NUMBER_LABELS = frozenset({"PHONE", "CREDIT_CARD", "IBAN", "IP", "US_SSN"})
_STRONG = frozenset({"CREDIT_CARD", "IBAN", "US_SSN", "IP"})  # win over PHONE where they overlap

Hit = tuple[int, int, str]  # start, end, label


def find(text: str, labels: frozenset[str]) -> list[Hit]:
    """The entities of `labels` (upper-case entity names) in `text`, unordered; where a PHONE overlaps a
    stronger entity, the PHONE is dropped."""
    hits: list[Hit] = []
    if "EMAIL" in labels and "@" in text:
        _emails(text, hits)
    numbers = labels & NUMBER_LABELS
    secrets = "SECRET" in labels
    if numbers or secrets:
        raw = text.encode("ascii", "replace")  # one byte a character: offsets stay
        shape = raw.translate(_NUMBER_SHAPE)
        if b"0" in shape:  # every other entity has a digit (secrets: checked as they are found)
            if numbers:
                _numbers(text, raw, shape, numbers, hits)
            if secrets:
                _secrets(text, raw, hits)
    if any(h[2] == "PHONE" for h in hits):
        strong = [h for h in hits if h[2] in _STRONG]
        hits = [h for h in hits if h[2] != "PHONE" or not any(s < h[1] and h[0] < e for s, e, _ in strong)]
    return hits


def is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


# --- e-mail -----------------------------------------------------------------------------------------

_EMAIL = re.compile(r"\w[\w.%+-]*@(?:[\w-]{1,63}\.)+[^\W\d_]{2,63}(?![\w-])")  # \w: jürgen@bücher.de too
_LOCAL_CHARS = "._%+-"


def _emails(text: str, hits: list[Hit]) -> None:
    # matched from the start of the local part before each "@" (64 characters at most)
    pos = 0
    while (at := text.find("@", pos)) >= 0:
        start = at
        while start > pos and (is_word(c := text[start - 1]) or c in _LOCAL_CHARS) and at - start <= 64:
            start -= 1
        while start < at and not is_word(text[start]):
            start += 1
        m = _EMAIL.match(text, start) if at - start <= 64 else None
        if m is None:
            pos = at + 1
        else:
            hits.append((start, m.end(), "EMAIL"))
            pos = m.end()


# --- numbers: cards, SSNs, IPv4, phones, IBANs, and IPv6 --------------------------------------------------


def _table(other: bytes, *classes: tuple[bytes, bytes]) -> bytes:
    """A bytes.translate table: the bytes of each class become its byte, all others `other`."""
    table = bytearray(other * 256)
    for members, to in classes:
        for c in members:
            table[c] = to[0]
    return bytes(table)


# The text as ASCII bytes, one per character (others become "?"), with digits as "0" and capitals as "A":
# re skips ahead to a literal far faster than to a class such as [0-9], and bytes.find is faster still.
_NUMBER_SHAPE = _table(
    b"x",
    (b"0123456789", b"0"),
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"A"),
    *((bytes([c]), bytes([c])) for c in b" .()-"),
)
# The same with digits and the gaps allowed in a number as "0" and all else "x": a number-shaped entity
# is in a run of 7 or more "0"s (rare in prose: "In 2024, " is not one), which a literal finds fast.
_GAP_SHAPE = _table(b"x", (b"0123456789 .()-", b"0"))
_NUMBER_RUN = re.compile(rb"0000000+")
_DATES = frozenset({b"0000-00-00", b"00.00.0000", b"0000.00.00", b"00-00-0000"})
# Each entity stands alone: no letter or digit touches it, nor a separator followed by a digit (so an IP
# is not the start of a version string, nor a phone the end of a longer dashed number).
# cards: 13-19 digits, or grouped as printed (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4) by spaces or dashes
_CARD = re.compile(
    r"(?<!\w)(?<![0-9][ -])(?:[0-9]{13,19}|[0-9]{4}(?P<sep>[ -])(?:[0-9]{4}(?P=sep)[0-9]{4}(?P=sep)"
    r"[0-9]{1,4}(?:(?P=sep)[0-9]{3})?|[0-9]{6}(?P=sep)[0-9]{4,5}))(?!\w|[ -][0-9])"
)
_SSN = re.compile(r"(?<!\w)(?<![0-9]-)([0-9]{3})-([0-9]{2})-([0-9]{4})(?!\w|-[0-9])")
_IPV4 = re.compile(r"(?<!\w)(?<![0-9]\.)[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?!\w|\.[0-9])")
_ALONE, _ALONE_END = r"(?<![\w+])(?<![0-9][.-])", r"(?!\w|[.-][0-9])"
# Every phone form in one regex; `wide` marks those that need 9 digits, not 7: an area code in
# parentheses, and a trunk-0 number (so that a date such as 01.02.2023 is not one).
_PHONE_FORMS = (
    r"\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,5}\)?){1,6}"  # +1 415 555 0132, +44 (0)20 7946 0958
    r"|(?P<wide>\([0-9]{2,5}\)[ .-]?[0-9]{2,4}(?:[ .-]?[0-9]{2,4}){1,2}"  # (415) 555-0132
    r"|0[0-9]{1,4}(?P<s0>[ .-])[0-9]{2,8}(?:(?P=s0)[0-9]{2,4}){0,3})"  # 020 7946 0958, 06 12 34 56 78
    r"|[2-9][0-9]{2}(?P<s1>[ .-])[2-9][0-9]{2}(?P=s1)[0-9]{4}"  # 415-555-0132, 415.555.0132
    r"|[2-9][0-9]{2}-[0-9]{4}"  # 555-0132
)
_PHONE = re.compile(f"{_ALONE}(?:{_PHONE_FORMS}){_ALONE_END}")
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)
_IBAN_NUMBERS = {ord(c): str(int(c, 36)) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_DIGITS = "0123456789"
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _DOUBLED[d] if i & 1 else d
    return total % 10 == 0 and digits.count(digits[0]) != len(digits)  # not 0000 0000 ...


def _numbers(text: str, raw: bytes, shape: bytes, wanted: frozenset[str], hits: list[Hit]) -> None:
    for run in _NUMBER_RUN.finditer(raw.translate(_GAP_SHAPE)):
        i, j = run.span()
        digits = shape.count(b"0", i, j)
        if digits >= 7 or (digits >= 4 and shape.count(b".", i, j) >= 3):  # phones, cards, SSNs; IPs
            start, stop = shape.find(b"0", i, j), shape.rfind(b"0", i, j) + 1
            _number(text, shape, start, stop, digits, wanted, hits)
    if "IBAN" in wanted:
        pos = 0
        while (i := shape.find(b"AA00", pos)) >= 0:
            _iban(text, i, hits)
            pos = i + 2
    if "IP" in wanted and ":" in text:
        _ipv6s(text, hits)


def _number(
    text: str, shape: bytes, start: int, stop: int, digits: int, wanted: frozenset[str], hits: list[Hit]
) -> None:
    if shape[start:stop] in _DATES:
        return  # 2024-01-15, 15.01.2024: common, and none of the entities
    end = stop + 2  # (the entities' regexes look at what follows to tell whether they stand alone)
    if "CREDIT_CARD" in wanted and digits >= 13:
        _cards(text, start, end, hits)
    if "US_SSN" in wanted and shape.find(b"000-00-0000", start, end) >= 0:
        _ssns(text, start, end, hits)
    if "IP" in wanted and shape.count(b".", start, end) >= 3:
        _ipv4s(text, start, end, hits)
    if "PHONE" in wanted and digits >= 7 and not (hits and hits[-1][0] == start and hits[-1][1] == stop):
        # (a card, SSN or IP that is the whole number would win over any phone in it)
        _phones(text, shape, start - 1 if start and text[start - 1] in "+(" else start, end, hits)


def _cards(text: str, start: int, end: int, hits: list[Hit]) -> None:
    for m in _CARD.finditer(text, start, end):
        digits = m.group().replace(" ", "").replace("-", "")
        if len(digits) <= 19 and _luhn(digits):
            hits.append((m.start(), m.end(), "CREDIT_CARD"))


def _ssns(text: str, start: int, end: int, hits: list[Hit]) -> None:
    for m in _SSN.finditer(text, start, end):
        area, group, serial = m.groups()
        if not (area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000"):
            hits.append((m.start(), m.end(), "US_SSN"))


def _ipv4s(text: str, start: int, end: int, hits: list[Hit]) -> None:
    for m in _IPV4.finditer(text, start, end):
        octets = m.group().split(".")
        valid = all(int(o) <= 255 and (o[0] != "0" or o == "0") for o in octets)
        if valid:
            hits.append((m.start(), m.end(), "IP"))


def _phones(text: str, shape: bytes, start: int, end: int, hits: list[Hit]) -> None:
    for m in _PHONE.finditer(text, start, end):
        s, e = m.span()
        if text[e - 1] == ")" and text.count("(", s, e) < text.count(")", s, e):
            e -= 1  # the parenthesis closes the sentence, not an area code
        if s > 1 and text[s - 1] == " " and text[s - 2].isdigit() and " " in text[s:e]:
            continue  # the last groups of a longer number written with spaces
        n = shape.count(b"0", s, e)
        # an SSN-shaped number that is not a valid SSN is no phone either
        if (9 if m.group("wide") else 7) <= n <= 15 and not _SSN.fullmatch(text, s, e):
            hits.append((s, e, "PHONE"))


def _iban(text: str, start: int, hits: list[Hit]) -> None:
    m = _IBAN.match(text, start)
    if m is None:
        return
    compact = m.group().replace(" ", "")
    if 15 <= len(compact) <= 34 and int((compact[4:] + compact[:4]).translate(_IBAN_NUMBERS)) % 97 == 1:
        hits.append((m.start(), m.end(), "IBAN"))


_IPV6_SEED = re.compile(r":[0-9A-Fa-f]{0,4}:")  # every IPv6 address has "::" or "h:h:" somewhere
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def _ipv6s(text: str, hits: list[Hit]) -> None:
    pos = 0
    n = len(text)
    while (seed := _IPV6_SEED.search(text, pos)) is not None:
        s, e = seed.span()
        while s > 0 and text[s - 1] in _IPV6_CHARS:
            s -= 1
        while e < n and text[e] in _IPV6_CHARS:
            e += 1
        pos = e
        candidate = text[s:e].rstrip(".")
        if candidate.endswith(":") and not candidate.endswith("::"):
            candidate = candidate[:-1]
        if (s and (text[s - 1].isalnum() or text[s - 1] == "_")) or not any(
            map(candidate.__contains__, _DIGITS)
        ):
            continue  # std::vector, or a word made of hex letters
        end = s + len(candidate)
        if end < n and (text[end].isalnum() or text[end] == "_"):
            continue  # 12:30:45pm
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue  # times such as 12:30:45
        hits.append((s, end, "IP"))


# --- secrets --------------------------------------------------------------------------------------------

# Every secret is a run of 15 or more token characters: only such runs (rare in prose) are looked into.
_TOKEN_SHAPE = _table(b" ", (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.~+/=", b"a"))
_LONG_RUN = b"a" * 15
# (not inside a longer word: "task-…" holds no "sk-" key)
_PREFIXED = tuple(
    re.compile(rf"(?<![A-Za-z0-9_-])(?:{p})(?![A-Za-z0-9_-])")
    for p in (
        r"sk-[A-Za-z0-9_-]{20,}",  # OpenAI sk-, sk-proj-, Anthropic sk-ant-
        r"xox[baprse]-[A-Za-z0-9-]{10,}",  # Slack
        r"A(?:KIA|SIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}",  # AWS access key id, Google API key
        r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}",  # GitHub
    )
)
_BEARER = re.compile(r"(?<![A-Za-z])[Bb]earer[ \t]+([A-Za-z0-9._~+/-]{20,}=*)")
# a value after a word such as api_key, token, secret, password: `: value`, `= "value"`, `": "value"`
_ASSIGNED = re.compile(
    r"(?i)(?<![a-z])(?:api|access|auth|secret|private|client|session|refresh|app)?[_-]?"
    r"(?:key|token|secret|passw(?:or)?d|pwd)(?:s|_?id)?[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?"
    r"([A-Za-z0-9_\-./+=~]{16,})"
)

_VALUE_AFTER = ((_BEARER, ("bearer",)), (_ASSIGNED, ("key", "token", "secret", "passw", "pwd")))


def _random(value: str) -> bool:
    """Looks generated: letters and digits mixed, many distinct characters (not a word or a number)."""
    return (
        any(map(value.__contains__, _DIGITS))
        and any(c.isalpha() for c in value)
        and len(set(value)) >= min(10, len(value) // 2)
    )


def _secrets(text: str, raw: bytes, hits: list[Hit]) -> None:
    shape = raw.translate(_TOKEN_SHAPE)
    pos = 0
    while (start := shape.find(_LONG_RUN, pos)) >= 0:
        end = shape.find(b" ", start)
        pos = end = len(shape) if end < 0 else end
        _secrets_in(text, start, end, hits)


def _secrets_in(text: str, start: int, end: int, hits: list[Hit]) -> None:
    for regex in _PREFIXED:
        for m in regex.finditer(text, start, end):
            if any(map(m.group().__contains__, _DIGITS)):
                hits.append((m.start(), m.end(), "SECRET"))
    before = max(0, start - 40)  # room for `"api_key": "` before the value
    near = text[before:end].lower()
    for regex, words in _VALUE_AFTER:
        if any(map(near.__contains__, words)):  # (a case-insensitive regex is slow: look first)
            for m in regex.finditer(text, before, end):
                if m.start(1) >= start and _random(m.group(1)):
                    hits.append((m.start(1), m.end(1), "SECRET"))
