"""The adapter of a vendor that has none yet: the LLM is configured and listed, and every call to it
answers 501 `vendor_not_supported`, so the rest of the configuration keeps working."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import aiohttp

from gateway.errors import TollgateError, VendorNotSupported
from providers.base import Call, Reply, StreamRelay, UpstreamRequest


class Unavailable:
    def __init__(self, vendor: str, slug: str) -> None:
        self.vendor = vendor
        self.slug = slug
        self.timeout = aiohttp.ClientTimeout()

    def _refuse(self) -> NoReturn:
        raise VendorNotSupported(
            f"LLM '{self.slug}': vendor {self.vendor} has no adapter in this version of Tollgate yet"
        )

    async def request(self, call: Call) -> UpstreamRequest:
        self._refuse()

    def response(self, call: Call, body: bytes, headers: Mapping[str, str]) -> Reply:
        self._refuse()

    def stream(self, call: Call) -> StreamRelay:
        self._refuse()

    def error(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> TollgateError:
        self._refuse()

    def models(self, body: bytes) -> list[dict[str, Any]]:
        self._refuse()

    def proxy_model(self, path: str, body: bytes) -> str:
        return ""
