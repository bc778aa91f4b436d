"""The per-process services filters use, and the default set for a gateway without shared counters."""

from __future__ import annotations

from pipeline.counters.local import LocalCounters
from pipeline.plugins.hosts import PluginHosts
from pipeline.registry import Services


def default_services() -> Services:
    """Process-local counters and plugin hosts (a snapshot built outside a runtime, e.g. a config probe)."""
    return Services(counters=LocalCounters(), plugins=PluginHosts())
