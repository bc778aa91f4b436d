"""Filter kind → factory. A filter kind is one module in pipeline/ and one line here.

The configuration already accepts every kind of INTERFACE.md (`sync/validate.py` checks them); a kind
that is not registered here is reported at startup and in /readyz as configured but not enforced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync.model import Filter

FILTER_KINDS: dict[str, Callable[[Filter], Any]] = {}
