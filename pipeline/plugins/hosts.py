"""The plugin processes of one gateway process: a registry that imports gRPC only once a plugin is
configured (grpcio and protobuf cost ~22 MiB per worker that runs no plugin)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.plugins.host import PluginHost


class PluginHosts:
    """The plugin processes of this gateway process, one per distinct command line."""

    def __init__(self, retire_grace_s: float = 10.0) -> None:
        self._hosts: dict[str, PluginHost] = {}
        # Hosts no longer configured: kept for a grace period, since requests that started on the previous
        # snapshot may still call them.
        self._retiring: dict[str, tuple[PluginHost, asyncio.Handle]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._grace_s = retire_grace_s

    def host(self, command_line: str) -> PluginHost:
        """The host for `command_line` (shlex-split), created on first use and started as soon as an event
        loop runs (at once if one runs now)."""
        host = self._hosts.get(command_line)
        if host is None:
            if command_line in self._retiring:
                host, handle = self._retiring.pop(command_line)
                handle.cancel()
            else:
                command = shlex.split(command_line)
                # For logs and metrics: "keyword_guard.py", "python chaos.py"
                name = " ".join(os.path.basename(part) for part in command[:2]) or command_line
                from pipeline.plugins.host import PluginHost  # grpc: only when a plugin is configured

                host = PluginHost(command, name)
            self._hosts[command_line] = host
        with contextlib.suppress(RuntimeError):  # no running loop: its first call starts it
            host.start()
        return host

    def __iter__(self) -> Iterator[PluginHost]:
        return iter(list(self._hosts.values()))

    def retain(self, command_lines: Iterable[str]) -> None:
        """Stop the hosts whose command is not in `command_lines` (after the grace period)."""
        keep = set(command_lines)
        for command_line in [c for c in self._hosts if c not in keep]:
            host = self._hosts.pop(command_line)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                host.terminate()
                continue
            handle = loop.call_later(self._grace_s, self._retire, command_line)
            self._retiring[command_line] = (host, handle)

    def _retire(self, command_line: str) -> None:
        host, _ = self._retiring.pop(command_line)
        task = asyncio.get_running_loop().create_task(host.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        """Stop every plugin process (SIGTERM, then SIGKILL after 2 s), retiring ones included."""
        hosts = list(self._hosts.values())
        for host, handle in self._retiring.values():
            handle.cancel()
            hosts.append(host)
        self._hosts.clear()
        self._retiring.clear()
        await asyncio.gather(*(host.stop() for host in hosts), *self._stopping)
