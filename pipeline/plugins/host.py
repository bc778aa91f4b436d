"""The gateway's side of out-of-process filter plugins: one supervised process per plugin command.

A `PluginHost` starts the executable with `TOLLGATE_PLUGIN_ADDRESS` set to a Unix socket in a private
temp dir, waits until its gRPC server answers, and restarts it with backoff whenever it exits. A call
never waits past its own deadline: while the plugin is down or (re)starting, a call waits for it only as
long as its deadline allows, then raises `PluginUnavailable` and the filter applies its `fail` policy.

`PluginHosts` (pipeline/plugins/hosts.py) is the per-process registry (owned by the runtime): one host per
distinct command line, shared by every filter and snapshot that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from pipeline.plugins.plugin_pb2 import FilterRequest, FilterResponse

log = logging.getLogger("tollgate.plugins")

SERVICE = "/tollgate.plugin.v1.FilterPlugin/"
PHASE_METHODS = {"pre_auth": "PreAuth", "auth": "Auth", "post_auth": "PostAuth", "response": "Response"}
BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
HEALTHY_S = 60.0  # a process up this long restarts from the first backoff step again
START_TIMEOUT_S = 10.0  # a process whose server does not answer by then is killed and started again
STOP_GRACE_S = 2.0  # SIGTERM, then SIGKILL after this
# Bodies are as large as the gateway accepts (--max-body-mib) or the upstream answers: no 4 MiB cap on a
# local socket. A restarted process listens on a new socket at once; keep gRPC's own reconnect backoff
# (1 s and up) from hiding it.
MESSAGE_OPTIONS = (("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1))
CHANNEL_OPTIONS = (
    *MESSAGE_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 200),
)

if TYPE_CHECKING:
    Method = grpc.aio.UnaryUnaryMultiCallable[FilterRequest, FilterResponse]


class PluginUnavailable(Exception):
    """The plugin could not answer in time: its process is down or starting, the deadline passed, or
    the call failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PluginHost:
    """One plugin process, supervised; `call` sends it one filter request."""

    def __init__(self, command: list[str], name: str) -> None:
        self.command = command
        self.name = name
        self.restarts = 0  # times the process exited (or never answered) and was started again
        self.failures = 0  # calls that raised PluginUnavailable
        self._dir = ""
        self._task: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._channel: grpc.aio.Channel | None = None
        self._methods: dict[str, Method] = {}
        self._ready = asyncio.Event()
        self._closing = False

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def pid(self) -> int | None:
        """The current (or last) process's id."""
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        """How the last process exited; None while it runs (or before the first one started)."""
        return self._process.returncode if self._process else None

    async def wait_ready(self, timeout_s: float) -> bool:
        """Start if needed and wait until the plugin answers; False if it did not within `timeout_s`."""
        self.start()
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        """Start supervising in the running event loop (idempotent)."""
        if self._task is None and not self._closing:
            self._dir = tempfile.mkdtemp(prefix="tollgate-plugin-")  # mode 0700: only we reach the socket
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"plugin {self.name}")

    async def call(self, phase: str, request: FilterRequest, timeout_s: float) -> FilterResponse:
        try:
            return await self._call(phase, request, timeout_s)
        except PluginUnavailable:
            self.failures += 1
            raise

    async def _call(self, phase: str, request: FilterRequest, timeout_s: float) -> FilterResponse:
        remaining_s = timeout_s
        if not self._ready.is_set():
            if self._closing:
                raise PluginUnavailable("plugin stopped")
            self.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                raise PluginUnavailable(self._down_reason()) from None
            remaining_s = deadline - loop.time()
            if not self._ready.is_set():  # it went down again while this call was being woken
                raise PluginUnavailable(self._down_reason())
        try:
            return await self._methods[phase](request, timeout=remaining_s)
        except grpc.aio.AioRpcError as error:
            raise PluginUnavailable(_rpc_reason(error, timeout_s)) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled
            raise PluginUnavailable("plugin stopped") from None  # the channel was closed under the call

    def _down_reason(self) -> str:
        if self._closing:
            return "plugin stopped"
        running = self._process is not None and self._process.returncode is None
        return "plugin process starting" if running else "plugin process down"

    async def _supervise(self) -> None:
        try:
            await self._keep_running()
        finally:  # also when the loop is torn down without stop()
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _keep_running(self) -> None:
        loop = asyncio.get_running_loop()
        step = 0
        while not self._closing:
            started = loop.time()
            code = await self._run_once()
            if self._closing:
                break
            if loop.time() - started >= HEALTHY_S:
                step = 0
            delay = BACKOFF_S[min(step, len(BACKOFF_S) - 1)]
            step += 1
            self.restarts += 1
            log.warning("plugin %s exited (%s); restarting in %.1f s", self.name, code, delay)
            await asyncio.sleep(delay)

    async def _run_once(self) -> str:
        """Run the process until it exits; what it exited with, for the log."""
        await self._close_channel()  # the last process's: its calls failed when that process exited
        socket_path = os.path.join(self._dir, "plugin.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)  # a dead process's socket would refuse connections until replaced
        address = f"unix://{socket_path}"
        env = {**os.environ, "TOLLGATE_PLUGIN_ADDRESS": address, "TOLLGATE_GATEWAY_PID": str(os.getpid())}
        try:
            # Own session: the terminal's Ctrl-C goes to the gateway, which stops plugins after draining.
            process = await asyncio.create_subprocess_exec(
                *self.command, env=env, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
            )
        except OSError as error:
            return f"could not start: {error}"
        self._process = process
        self._channel = channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._methods = {
            phase: channel.unary_unary(
                SERVICE + method,
                request_serializer=FilterRequest.SerializeToString,
                response_deserializer=FilterResponse.FromString,
            )
            for phase, method in PHASE_METHODS.items()
        }
        try:
            exited = asyncio.ensure_future(process.wait())
            if await self._connect(channel, exited):
                self._ready.set()
                log.info("plugin %s ready (pid %d)", self.name, process.pid)
            await exited
        finally:
            # The channel stays open until the next start or stop: closing it now would cancel calls
            # still in flight, which fail on their own as the process's socket is gone.
            self._ready.clear()
            if process.returncode is None:  # cancelled (stop) or start timeout: stop it ourselves
                await _terminate(process)
        return _exit_reason(process.returncode)

    async def _close_channel(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._methods = self._channel, None, {}
            await channel.close()

    async def _connect(self, channel: grpc.aio.Channel, exited: asyncio.Future[int]) -> bool:
        """Wait until the plugin's server answers; False if the process exited first or timed out."""
        connected = asyncio.ensure_future(channel.channel_ready())
        try:
            either: set[asyncio.Future[Any]] = {connected, exited}
            done, _ = await asyncio.wait(either, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
        if connected in done:
            return True
        if exited not in done:
            log.warning("plugin %s did not answer within %.0f s; killing it", self.name, START_TIMEOUT_S)
            assert self._process is not None
            await _terminate(self._process)
        return False

    async def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 2 s) and the supervisor; calls fail from now."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_channel()

    def terminate(self) -> None:
        """Without an event loop: send SIGTERM and forget (the plugin's SDK exits on it)."""
        self._closing = True
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


async def _terminate(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(TimeoutError):  # SIGKILL cannot be refused; never hang a shutdown on it
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _rpc_reason(error: grpc.aio.AioRpcError, timeout_s: float) -> str:
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer within {timeout_s * 1000:.0f} ms"
    return f"{code.name.lower()}: {error.details()}"
