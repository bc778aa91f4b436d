"""Model prices, looked up by vendor and model on the hot path."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from sync.model import Price

_MEMO_LIMIT = 4096


class Rate(msgspec.Struct, frozen=True):
    """USD per token (the configuration's per-1M figures divided once, at snapshot build)."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    @classmethod
    def from_price(cls, price: Price) -> Rate:
        per = 1e-6
        write = price.input_per_1m if price.cache_write_per_1m is None else price.cache_write_per_1m
        read = price.input_per_1m if price.cache_read_per_1m is None else price.cache_read_per_1m
        return cls(price.input_per_1m * per, price.output_per_1m * per, write * per, read * per)


class PriceBook:
    """Exact model match first, then the longest configured model that prefixes it at a `-`, `@` or `:`.

    Vendors answer with dated names (`gpt-4o-mini-2024-07-18`) for an undated price (`gpt-4o-mini`).
    """

    def __init__(self, prices: Iterable[Price]) -> None:
        self._rates: dict[tuple[str, str], Rate] = {(p.vendor, p.model): Rate.from_price(p) for p in prices}
        self._memo: dict[tuple[str, str], Rate | None] = {}

    def __len__(self) -> int:
        return len(self._rates)

    def rate(self, vendor: str, model: str) -> Rate | None:
        key = (vendor, model)
        rate = self._rates.get(key)
        if rate is not None:
            return rate
        if key in self._memo:
            return self._memo[key]
        rate = self._prefix_rate(vendor, model)
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[key] = rate
        return rate

    def _prefix_rate(self, vendor: str, model: str) -> Rate | None:
        best, best_len = None, 0
        for (v, m), rate in self._rates.items():
            if v == vendor and len(m) > best_len and model.startswith(m) and model[len(m)] in "-@:":
                best, best_len = rate, len(m)
        return best
