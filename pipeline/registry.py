"""Filter kind → factory. A filter kind is one factory here; `python:` and `plugin:` kinds are prefixes.

A factory gets the filter's configuration and the process's `Services` and returns the step for the
filter's phase: a request filter (pre_auth, auth, post_auth), or for `response` a text rule or an event
filter (pipeline/base.py). It raises ValueError (or ImportError/OSError) when the filter cannot be built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from pipeline.content import MaxPromptTokens, RequireFields, StripFields, TextFilter
from pipeline.routing import Routing
from pipeline.text import BlockList, PatternRule, PiiRule
from sync.model import Filter

if TYPE_CHECKING:
    from pipeline.auth import Credentials
    from pipeline.counters.base import Counters
    from pipeline.plugins.hosts import PluginHosts


class Services(msgspec.Struct, frozen=True):
    """What filters use that outlives a snapshot: one per process."""

    counters: Counters  # where rate limits and budgets are counted
    plugins: PluginHosts
    credentials: Credentials | None = None  # apps not in the snapshot (an edge's, looked up at its hub)
    routing: Routing = msgspec.field(default_factory=Routing)  # routes' balancing and cool-downs


def _text(rule: Callable[[str, dict[str, Any]], Any]) -> Callable[[Filter, Services], Any]:
    def factory(spec: Filter, services: Services) -> Any:
        built = rule(spec.name, spec.config)
        return built if spec.phase == "response" else TextFilter(built)

    return factory


def _python(spec: Filter, services: Services) -> Any:
    from pipeline.plugins.filters import python_filter

    return python_filter(spec)


def _plugin(spec: Filter, services: Services) -> Any:
    from pipeline.plugins.filters import plugin_filter

    return plugin_filter(spec, services.plugins)


FILTER_KINDS: dict[str, Callable[[Filter, Services], Any]] = {
    "pii_redact": _text(PiiRule),
    "regex_block": _text(BlockList),
    "response_regex": _text(PatternRule),
    "max_prompt_tokens": lambda spec, services: MaxPromptTokens(spec),
    "require_fields": lambda spec, services: RequireFields(spec),
    "strip_fields": lambda spec, services: StripFields(spec),
    "python:": _python,
    "plugin:": _plugin,
}


def is_text_rule(step: Any) -> bool:
    return hasattr(step, "find") and hasattr(step, "holdback")
