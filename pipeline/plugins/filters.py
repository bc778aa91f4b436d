"""The `python:` and `plugin:` filter kinds: filter objects the chain runs, built from a `Filter` spec.

Both ask a user's function (pipeline/sdk.py's `FilterCall` → `Verdict`) and apply its verdict the same
way: in a request phase a block raises `ContentBlocked` and a rewrite replaces the request's JSON body; in
the response phase a rewrite replaces the answer (or the streamed event). A `python:` filter runs in the
gateway's process and event loop; a `plugin:` filter runs in its own process behind gRPC (host.py), with
a deadline (`timeout_ms`, default 200) and a policy for when it cannot answer (`fail: closed`, the
default, refuses the request with `FilterUnavailable`; `fail: open` lets it through).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import os
import shlex
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from gateway.errors import ContentBlocked, FilterUnavailable
from pipeline.plugins.hosts import PluginHosts
from pipeline.sdk import FilterCall, Verdict
from sync.model import Filter

if TYPE_CHECKING:  # grpcio and protobuf load with the first plugin filter, not for python: ones
    from gateway.context import RequestContext
    from pipeline.base import EventFilter, RequestFilter
    from pipeline.plugins.host import PluginHost
    from pipeline.plugins.plugin_pb2 import FilterResponse

log = logging.getLogger("tollgate.plugins")

PYTHON_PREFIX = "python:"
PLUGIN_PREFIX = "plugin:"
REQUEST_PHASES = frozenset({"pre_auth", "auth", "post_auth"})
RESERVED_KEYS = frozenset({"timeout_ms", "fail"})  # the gateway's, not sent to the plugin
DEFAULT_TIMEOUT_MS = 200
WARN_EVERY_S = 10.0
PASS = Verdict()

FilterFunction = Callable[[FilterCall], "Verdict | Awaitable[Verdict | None] | None"]


class Target(Protocol):
    async def verdict(self, ctx: RequestContext, doc: Any, streamed: bool) -> Verdict: ...


class RequestPhaseFilter:
    """A `RequestFilter` (pre_auth, auth, post_auth) asking `target` about the request's JSON body."""

    __slots__ = ("name", "target")

    def __init__(self, name: str, target: Target) -> None:
        self.name = name
        self.target = target

    async def __call__(self, ctx: RequestContext) -> None:
        verdict = await self.target.verdict(ctx, ctx.body.doc, False)
        if verdict.action == "block":
            raise ContentBlocked(self.name, verdict.reason)
        if verdict.action == "rewrite":
            ctx.body.replace(verdict.body)


class ResponsePhaseFilter:
    """An `EventFilter` asking `target` about the answer, or about each streamed event."""

    __slots__ = ("name", "target")

    def __init__(self, name: str, target: Target) -> None:
        self.name = name
        self.target = target

    async def __call__(self, ctx: RequestContext, doc: Any, streamed: bool) -> Any:
        verdict = await self.target.verdict(ctx, doc, streamed)
        if verdict.action == "block":
            raise ContentBlocked(self.name, verdict.reason)
        return verdict.body if verdict.action == "rewrite" else doc


def metadata(ctx: RequestContext) -> dict[str, str]:
    """What a filter is told about the request (pipeline/sdk.py's `FilterCall.metadata`)."""
    llm, app, call = ctx.llm, ctx.app, ctx.call
    op = ctx.op or (call.op if call else None)
    return {
        "request_id": ctx.request_id,
        "llm": llm.slug if llm else "",
        "vendor": llm.vendor if llm else "",
        "model": ctx.model,
        "app": app.name if app else "",
        "operation": op.value if op else "",
        "path": call.path if call else "",
        "stream": "true" if ctx.stream else "false",
    }


def _wrap(spec: Filter, target: Target) -> RequestFilter | EventFilter:
    if spec.phase in REQUEST_PHASES:
        return RequestPhaseFilter(spec.name, target)
    return ResponsePhaseFilter(spec.name, target)


# python:pkg.module:callable


class PythonTarget:
    __slots__ = ("_warned_at", "config", "fail_open", "filter", "function", "is_async", "phase")

    def __init__(self, spec: Filter, function: FilterFunction) -> None:
        self.filter = spec.name
        self.phase = spec.phase
        self.config = spec.config
        self.function = function
        self.is_async = _is_async(function)
        self.fail_open = spec.config.get("fail") == "open"
        self._warned_at = -math.inf

    def _failed(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:  # a filter failing on every request: one trace per 10 s
            self._warned_at = now
            log.error(
                "filter '%s' raised; fail %s",
                self.filter,
                "open" if self.fail_open else "closed",
                exc_info=error,
            )

    async def verdict(self, ctx: RequestContext, doc: Any, streamed: bool) -> Verdict:
        meta = metadata(ctx)
        call = FilterCall(
            phase=self.phase,
            filter=self.filter,
            config=self.config,
            body=doc,
            metadata=meta,
            streamed=streamed,
        )
        try:
            result = self.function(call)
            if self.is_async:
                result = await result  # type: ignore[misc]  # checked once, at build
        except Exception as error:  # the filter's own bug: its `fail` policy decides, as for plugins
            self._failed(error)
            if self.fail_open:
                return PASS
            raise FilterUnavailable(self.filter, f"it raised {type(error).__name__}") from None
        if result is None:
            return PASS
        if not isinstance(result, Verdict):
            raise TypeError(f"filter '{self.filter}' returned {type(result).__name__}, not a Verdict or None")
        return result


def python_filter(spec: Filter) -> RequestFilter | EventFilter:
    """The filter for `kind: python:pkg.module:callable`; ValueError (one line) if it cannot be loaded."""
    return _wrap(spec, PythonTarget(spec, load_callable(spec.kind)))


def load_callable(kind: str) -> FilterFunction:
    target = kind.removeprefix(PYTHON_PREFIX)
    module_name, _, path = target.partition(":")
    if not module_name or not path:
        raise ValueError(f"'{kind}' is not of the form python:pkg.module:callable")
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as error:  # any failure of the user's module becomes the startup's one-line reason
        raise ValueError(f"cannot import module '{module_name}': {type(error).__name__}: {error}") from error
    for attribute in path.split("."):
        found = getattr(found, attribute, None)
        if found is None:
            raise ValueError(f"module '{module_name}' has no attribute '{path}'")
    if not callable(found):
        raise ValueError(f"'{target}' is a {type(found).__name__}, not a callable")
    return found  # type: ignore[no-any-return]


def _is_async(function: Callable[..., Any]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


# plugin:/path/to/executable [args]


class PluginTarget:
    __slots__ = (
        "_warned_at",
        "config_json",
        "fail_open",
        "failed_open",
        "filter",
        "host",
        "phase",
        "timeout_s",
    )

    def __init__(self, spec: Filter, host: PluginHost) -> None:
        self.filter = spec.name
        self.phase = spec.phase
        self.host = host
        self.config_json = orjson.dumps({k: v for k, v in spec.config.items() if k not in RESERVED_KEYS})
        self.timeout_s = spec.config.get("timeout_ms", DEFAULT_TIMEOUT_MS) / 1000
        self.fail_open = spec.config.get("fail", "closed") == "open"
        self.failed_open = 0  # calls let through because the plugin could not answer
        self._warned_at = -math.inf

    async def verdict(self, ctx: RequestContext, doc: Any, streamed: bool) -> Verdict:
        from pipeline.plugins.host import PluginUnavailable
        from pipeline.plugins.plugin_pb2 import FilterRequest

        request = FilterRequest(
            filter=self.filter,
            config_json=self.config_json,
            body=orjson.dumps(doc),
            metadata=metadata(ctx),
            streamed=streamed,
        )
        try:
            return _to_verdict(await self.host.call(self.phase, request, self.timeout_s))
        except PluginUnavailable as error:
            if not self.fail_open:
                raise FilterUnavailable(self.filter, error.reason) from None
            self.failed_open += 1
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "filter %s: plugin unavailable (%s); passing requests (fail: open), %d so far",
                    self.filter,
                    error.reason,
                    self.failed_open,
                )
            return PASS


def _to_verdict(response: FilterResponse) -> Verdict:
    from pipeline.plugins.host import PluginUnavailable
    from pipeline.plugins.plugin_pb2 import FilterResponse

    action = response.action
    if action == FilterResponse.PASS:
        return PASS
    if action == FilterResponse.BLOCK:
        return Verdict.block(response.reason)
    if action == FilterResponse.REWRITE:
        try:
            return Verdict.rewrite(orjson.loads(response.body))
        except orjson.JSONDecodeError:
            raise PluginUnavailable("the plugin's rewritten body is not JSON") from None
    raise PluginUnavailable(f"the plugin answered an unknown action {int(action)}")


def plugin_filter(spec: Filter, hosts: PluginHosts) -> RequestFilter | EventFilter:
    """The filter for `kind: plugin:/path/to/executable [args]`; ValueError if its config is wrong."""
    problems = _plugin_config_problems(spec)
    if problems:
        raise ValueError("; ".join(problems))
    return _wrap(spec, PluginTarget(spec, hosts.host(plugin_command(spec.kind))))


def plugin_command(kind: str) -> str:
    """The command line of a `plugin:` kind (the key of its host in `PluginHosts`)."""
    return kind.removeprefix(PLUGIN_PREFIX).strip()


# validation


def config_problems(spec: Filter) -> list[str]:
    """What is wrong with a `python:` or `plugin:` filter's kind and config (empty: nothing)."""
    if spec.kind.startswith(PYTHON_PREFIX):
        fail = spec.config.get("fail", "closed")
        problems = (
            [] if fail in ("open", "closed") else [f"config.fail must be 'open' or 'closed', not {fail!r}"]
        )
        try:
            load_callable(spec.kind)
        except ValueError as error:
            problems.append(str(error))
        return problems
    if spec.kind.startswith(PLUGIN_PREFIX):
        return _plugin_config_problems(spec)
    return []


def _plugin_config_problems(spec: Filter) -> list[str]:
    problems = []
    timeout = spec.config.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        problems.append(f"config.timeout_ms must be a positive number of milliseconds, not {timeout!r}")
    fail = spec.config.get("fail", "closed")
    if fail not in ("open", "closed"):
        problems.append(f"config.fail must be 'open' or 'closed', not {fail!r}")
    problem = _command_problem(plugin_command(spec.kind))
    if problem:
        problems.append(problem)
    return problems


def _command_problem(command_line: str) -> str | None:
    try:
        command = shlex.split(command_line)
    except ValueError as error:
        return f"cannot parse the plugin command '{command_line}': {error}"
    if not command:
        return "the plugin kind names no executable (plugin:/path/to/executable)"
    executable = command[0]
    path = executable if os.sep in executable else shutil.which(executable)
    if path is None or not os.path.isfile(path):
        return f"plugin executable '{executable}' is not a file"
    if not os.access(path, os.X_OK):
        return f"plugin executable '{executable}' is not executable (chmod +x)"
    return None
