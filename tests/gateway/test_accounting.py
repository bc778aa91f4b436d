"""Prices and cost: which configured price a model's answer is charged at, and what the usage costs."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.accounting import cost
from providers.base import Usage
from sync.model import Price
from sync.prices import PriceBook, Rate


def price(
    model: str, input_per_1m: float, output_per_1m: float = 0.0, vendor: str = "openai", **cache: float
) -> Price:
    raw: dict[str, Any] = {"vendor": vendor, "model": model, "input_per_1m": input_per_1m,
                           "output_per_1m": output_per_1m, **cache}  # fmt: skip
    return msgspec.convert(raw, Price)


MINI = price("gpt-4o-mini", 0.15, 0.60, cache_read_per_1m=0.075)
FOUR_O = price("gpt-4o", 2.50, 10.00, cache_read_per_1m=1.25)
GPT4 = price("gpt-4", 30.0, 60.0)
CLAUDE = price(
    "claude-sonnet-4-5", 3.0, 15.0, vendor="anthropic", cache_write_per_1m=3.75, cache_read_per_1m=0.30
)
NO_CACHE = price("plain", 2.0, 8.0)
FREE_CACHE = price("free-cache", 1.0, 1.0, cache_read_per_1m=0.0, cache_write_per_1m=0.0)
BOOK = [MINI, FOUR_O, GPT4, CLAUDE, NO_CACHE, FREE_CACHE]
M = 1e-6  # the configuration's figures are per 1,000,000 tokens

# (id, vendor, model, usage, expected cost in USD, or None when no price applies)
CASES: list[tuple[str, str, str, Usage, float | None]] = [
    ("exact model", "openai", "gpt-4o-mini", Usage(1000, 500), 1000 * 0.15 * M + 500 * 0.60 * M),
    ("dated model", "openai", "gpt-4o-mini-2024-07-18", Usage(1000, 500), 1000 * 0.15 * M + 500 * 0.60 * M),
    ("dated shorter model", "openai", "gpt-4o-2024-08-06", Usage(1000, 500), 1000 * 2.5 * M + 500 * 10 * M),
    ("longest prefix wins", "openai", "gpt-4o-mini-audio", Usage(1_000_000), 0.15),
    ("prefix at -", "openai", "gpt-4-turbo", Usage(1_000_000), 30.0),
    ("prefix at @", "openai", "gpt-4@2024-05-01", Usage(1_000_000), 30.0),
    ("prefix at :", "openai", "gpt-4:latest", Usage(1_000_000), 30.0),
    ("no prefix inside a word", "openai", "gpt-40", Usage(1000, 500), None),
    ("gpt-4 does not price gpt-4o-ish", "openai", "gpt-4omni", Usage(1000, 500), None),
    ("no prefix at a dot", "openai", "gpt-4.1", Usage(1000, 500), None),
    ("no prefix at /", "openai", "gpt-4/x", Usage(1000, 500), None),
    ("a shorter name is no match", "openai", "gpt", Usage(1000, 500), None),
    ("unknown model", "openai", "o1", Usage(1000, 500), None),
    ("unknown vendor", "mistral", "gpt-4o-mini", Usage(1000, 500), None),
    ("model of another vendor", "anthropic", "gpt-4o", Usage(1000, 500), None),
    ("other vendor's dated model", "anthropic", "claude-sonnet-4-5-20250929", Usage(1000, 100),
     1000 * 3 * M + 100 * 15 * M),
    ("cache read at the cache rate only", "openai", "gpt-4o", Usage(1000, 100, cache_read_tokens=400),
     600 * 2.5 * M + 400 * 1.25 * M + 100 * 10 * M),
    ("cache read and write at their rates", "anthropic", "claude-sonnet-4-5",
     Usage(2000, 100, cache_read_tokens=500, cache_write_tokens=1000),
     500 * 3 * M + 500 * 0.30 * M + 1000 * 3.75 * M + 100 * 15 * M),
    ("all of the prompt cached", "openai", "gpt-4o-mini", Usage(1000, 0, cache_read_tokens=1000),
     1000 * 0.075 * M),
    ("absent cache prices are the input price", "openai", "plain",
     Usage(1000, 10, cache_read_tokens=400, cache_write_tokens=100), 1000 * 2 * M + 10 * 8 * M),
    ("cache write without its price is the input price", "openai", "gpt-4o",
     Usage(1000, 0, cache_write_tokens=300), 1000 * 2.5 * M),
    ("zero cache prices are free", "openai", "free-cache",
     Usage(1000, 10, cache_read_tokens=600, cache_write_tokens=300), 100 * M + 10 * M),
    ("zero usage", "openai", "gpt-4o", Usage(), 0.0),
    ("zero usage, dated", "anthropic", "claude-sonnet-4-5-x", Usage(), 0.0),
    ("output only", "openai", "gpt-4o-mini", Usage(0, 2_000_000), 1.2),
    ("more cached than prompt is never negative", "openai", "gpt-4o-mini",
     Usage(100, 0, cache_read_tokens=200), 200 * 0.075 * M),
]  # fmt: skip


@pytest.mark.parametrize(
    ("vendor", "model", "usage", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cost(vendor: str, model: str, usage: Usage, expected: float | None) -> None:
    for book in (PriceBook(BOOK), PriceBook(reversed(BOOK))):  # the answer never depends on the order
        for _ in range(2):  # the second lookup comes from the memo
            rate = book.rate(vendor, model)
            if expected is None:
                assert rate is None
            else:
                assert rate is not None
                assert cost(rate, usage) == pytest.approx(expected, rel=1e-12, abs=0)


LOOKUPS = [
    ("exact", "gpt-4o-mini", MINI),
    ("dated", "gpt-4o-mini-2024-07-18", MINI),
    ("shorter dated", "gpt-4o-2024-11-20", FOUR_O),
    ("longest of two prefixes", "gpt-4o-mini-search-preview", MINI),
    ("short price beside longer ones", "gpt-4-0613", GPT4),
]


@pytest.mark.parametrize(("model", "expected"), [c[1:] for c in LOOKUPS], ids=[c[0] for c in LOOKUPS])
def test_lookup_picks_the_price(model: str, expected: Price) -> None:
    assert PriceBook(BOOK).rate("openai", model) == Rate.from_price(expected)


def test_rates_are_per_token() -> None:
    assert Rate.from_price(CLAUDE) == Rate(3.0 * M, 15.0 * M, 3.75 * M, 0.30 * M)
    assert Rate.from_price(NO_CACHE) == Rate(2.0 * M, 8.0 * M, 2.0 * M, 2.0 * M)
    assert Rate.from_price(FREE_CACHE) == Rate(1.0 * M, 1.0 * M, 0.0, 0.0)


def test_an_empty_book_prices_nothing() -> None:
    book = PriceBook(())
    assert len(book) == 0 and book.rate("openai", "gpt-4o-mini") is None
    assert len(PriceBook(BOOK)) == len(BOOK)


def test_many_unknown_models_stay_unpriced() -> None:
    book = PriceBook(BOOK)
    assert all(book.rate("openai", f"gpt-40{i}") is None for i in range(5000))  # past the memo's bound
    assert book.rate("openai", "gpt-4o-mini-2024-07-18") == Rate.from_price(MINI)


@pytest.mark.parametrize(
    "raw",
    [
        {"vendor": "openai", "model": "m", "input_per_1m": -1},
        {"vendor": "openai", "model": "m", "input_per_1m": 1, "cache_read_per_1m": -0.1},
        {"vendor": "openia", "model": "m", "input_per_1m": 1},
        {"vendor": "openai", "model": "", "input_per_1m": 1},
        {"vendor": "openai", "model": "m"},
    ],
    ids=["negative input", "negative cache", "unknown vendor", "empty model", "no input price"],
)
def test_prices_that_cannot_be_configured(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, Price)
