"""Hub and edges (issue 6): how long a large configuration takes from the hub to an edge, and whether an
edge's hot path notices a sync in progress.

    python bench/sync.py                                  # 1,000 LLMs, 100,000 apps: a few minutes
    python bench/sync.py --llms 100 --apps 1000 --seconds 5 --rounds 1

(a) In process: a fresh SQLite store is filled with --llms LLMs (openai, on the mock upstream, keys as
    `$SECRET/` references, a mix of allowed_models regexes, pii_redact / regex_block / response_regex
    filters, rate limits and budgets) and --apps apps (each with a key, granted three LLMs, owned by an
    admin or by a developer whose group grants a tenth of the LLMs). Each step a hub and an edge take is
    timed alone: reading and decoding the store, resolving the apps, the namespace's content and its
    checksum, sealing it, the edge's decode, and the edge's snapshot build (build_async, no apps); and,
    for the hub's side of an admin change, the whole-config validation and the hub's snapshot build.
(b) End to end: a hub (`serve --mode control`) on that database and one edge (`--mode edge
    --heartbeat-s 1`), real processes on loopback. --pushes times: PATCH one LLM's default_model at the
    hub, POST /api/v1/edges/push, and poll the edge's /readyz until its snapshot version moves (the new
    snapshot built and swapped in). Reported: push → applied, and PATCH → applied (the hub's validation
    and reload on the PATCH come before the push).
(c) Latency under load: steady load on the edge (wrk, or a closed-loop aiohttp client when wrk is not
    installed) in three kinds of phase, alternated --rounds times: "idle" (nothing else), "patch" (a PATCH
    at the hub every --push-every s, no push: the hub's work on the shared machine, the control) and
    "push" (the same PATCH followed by a push: the edge fetches, checks, decodes and rebuilds each time).
    First on a small configuration (--small-llms, --small-apps), then with --llms LLMs (the edge's
    snapshot of (a) and (b)) but --large-load-apps apps: apps do not travel to edges, so the edge's work
    per push is the same, while a hub's PATCH with 100,000 apps takes seconds (see (b)) and could not
    change the configuration twice a second.

The edge is pinned to --core; the hub, the mock upstream and the load to --load-core.
Results also go to bench/results/sync.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import BENCH, BODY, cpu_seconds, free_port, parse_wrk, pinned

from store.base import Put
from store.sqlite import SqliteStore
from sync.entities import KINDS, to_stored
from sync.model import App, Entity, Filter, Group, Llm, Price, RateLimit, Secret, User
from sync.payload import Published, checksum, content, seal, to_state
from sync.secrets import SecretBox
from sync.snapshot import build, build_async, resolve_apps
from sync.state import ConfigState
from sync.validate import validate

UPSTREAM_KEY = "sk-bench-upstream-key"
ADMIN_TOKEN = "bench-admin-token"
EDGE_TOKEN = "bench-edge-token"
SECRET_KEY = "bench-sync-master-key-0123456789"
ADMIN = "admin@bench.example"
TRAFFIC_LLM = "llm-0000"
EDGE_ID = "bench-edge"
GROUPS = 10
LOG_LEVEL = ["warning"]  # of the hub and the edge (--log-level)
DEVELOPERS = 100
PRICED_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "text-embedding-3-small")
# What the PATCHes alternate in default_model (every LLM's allowed_models take both).
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o")  # the first is the one filled


def slug(i: int) -> str:
    return f"llm-{i:04d}"


def app_key(i: int) -> str:
    return f"tg-bench-{i:06d}"


# -- the configuration ------------------------------------------------------------------------------


def llm(i: int, upstream_url: str) -> Llm:
    """LLM i: llm-0000 (the traffic's) is bench/run.py's; the others vary their regexes and filters."""
    allowed = (["gpt-4o.*", "gpt-4.1.*"], ["gpt-4o-mini", "gpt-4o", "text-embedding-3-.*"], [])[i % 3]
    filters = ([], ["pii"], ["deny", "pii"], ["no-secrets"])[i % 4]
    return Llm(
        slug=slug(i),
        vendor="openai",
        api_base=upstream_url + "/v1",
        api_key="$SECRET/UPSTREAM",
        allowed_models=["gpt-4o.*"] if i == 0 else allowed,
        default_model="gpt-4o-mini",
        filters=[] if i == 0 else filters,
        rate_limit=RateLimit(rpm=6000) if i % 10 == 2 else None,
        monthly_budget_usd=500.0 if i % 10 == 3 else None,
        timeout_s=120,
    )


def app(i: int, llms: int) -> App:
    """App i: even ones owned by the admin, odd ones by a developer (grants through their group)."""
    granted = (
        [TRAFFIC_LLM]
        if i == 0
        else sorted({slug(i % llms), slug((7 * i + 1) % llms), slug((13 * i + 2) % llms)})
    )
    return App(
        name=f"app-{i:06d}",
        owner=ADMIN if i % 2 == 0 else f"dev-{i % DEVELOPERS}@bench.example",
        api_key=app_key(i),
        llms=granted,
        rate_limit=RateLimit(rpm=600) if i % 5 == 1 else None,
        monthly_budget_usd=20.0 if i % 7 == 1 else None,
    )


def config_entities(llms: int, upstream_url: str) -> list[tuple[str, Entity]]:
    """Everything but the apps."""
    out: list[tuple[str, Entity]] = [("secrets", Secret(name="UPSTREAM", value=UPSTREAM_KEY))]
    out += [
        ("filters", Filter(name="pii", phase="post_auth", kind="pii_redact")),
        (
            "filters",
            Filter(
                name="deny",
                phase="pre_auth",
                kind="regex_block",
                config={"keywords": ["jailbreak"], "patterns": [r"ignore (all|previous) instructions"]},
            ),
        ),
        ("filters", Filter(name="no-secrets", phase="response", kind="response_regex",
                           config={"patterns": [r"sk-[A-Za-z0-9]{20,}"]})),
    ]  # fmt: skip
    out += [
        ("prices", Price(vendor="openai", model=m, input_per_1m=0.15 * (n + 1), output_per_1m=0.6 * (n + 1)))
        for n, m in enumerate(PRICED_MODELS)
    ]
    out += [("llms", llm(i, upstream_url)) for i in range(llms)]
    out += [
        ("groups", Group(name=f"team-{g}", llms=[slug(i) for i in range(llms) if i % GROUPS == g]))
        for g in range(GROUPS)
    ]
    out.append(("users", User(email=ADMIN, role="admin")))
    out += [
        ("users", User(email=f"dev-{d}@bench.example", groups=[f"team-{d % GROUPS}"]))
        for d in range(DEVELOPERS)
    ]
    return out


def put(kind: str, entity: Entity, box: SecretBox) -> Put:
    k = KINDS[kind]
    data, key_hash = to_stored(k, entity, box, None)
    return Put(kind, k.key(entity), str(getattr(entity, "namespace", "")), data, key_hash, mode="insert")


async def fill(path: Path, llms: int, apps: int, upstream_url: str, box: SecretBox) -> dict[str, Any]:
    """A fresh store with the configuration; returns the fill time and the id of the LLM the PATCHes
    change (the last one: not the traffic's)."""
    started = time.perf_counter()
    store = SqliteStore(path)
    await store.open()
    try:
        rows = await store.write([put(kind, e, box) for kind, e in config_entities(llms, upstream_url)])
        target = next(r for r in rows if r is not None and r.name == slug(llms - 1))
        for first in range(0, apps, 20_000):
            await store.write(
                [put("apps", app(i, llms), box) for i in range(first, min(apps, first + 20_000))]
            )
    finally:
        await store.close()
    return {"fill_s": time.perf_counter() - started, "patch_id": target.id}


# -- (a) in process ---------------------------------------------------------------------------------


async def breakdown(path: Path, box: SecretBox, repeat: int) -> dict[str, Any]:
    """Each step alone, `repeat` times (the median is reported)."""
    store = SqliteStore(path)
    await store.open()
    times: dict[str, list[float]] = {}
    sizes: dict[str, Any] = {}

    def timed(name: str, started: float) -> None:
        times.setdefault(name, []).append(time.perf_counter() - started)

    try:
        for _ in range(repeat):
            t = time.perf_counter()
            rows = await store.load_config()
            timed("hub: store.load_config", t)
            t = time.perf_counter()
            state = ConfigState.from_rows(rows)
            timed("hub: ConfigState.from_rows", t)
            t = time.perf_counter()
            apps = resolve_apps(state)
            timed("hub: resolve_apps", t)
            t = time.perf_counter()
            config = content(state, "", box)
            timed("hub: payload.content", t)
            t = time.perf_counter()
            digest = checksum(config)
            timed("hub: payload.checksum", t)
            t = time.perf_counter()
            sealed = seal(Published(digest, state.version, config, time.time()), box)
            timed("hub: seal (publish; the edge seals again)", t)
            t = time.perf_counter()
            checksum(config)
            edge_state = to_state(config, 1)
            timed("edge: checksum + to_state", t)
            t = time.perf_counter()
            snapshot = await build_async(edge_state, box, services=None)
            timed("edge: build_async", t)
            t = time.perf_counter()
            problems = validate(state.as_config())
            timed("hub, on a PATCH: validate(as_config)", t)
            t = time.perf_counter()
            hub_snapshot = build(state, box)
            timed("hub, on a PATCH: build (with apps)", t)
            assert not problems, problems[:3]
            assert len(snapshot.llms) == len(state.of("llms")) and len(apps) == len(hub_snapshot.apps)
            sizes = {
                "llms": len(snapshot.llms),
                "apps": len(apps),
                "content_bytes": len(config),
                "sealed_bytes": len(sealed),
                "warnings": len(snapshot.warnings),
            }
    finally:
        await store.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    ship = [
        "hub: payload.content",
        "hub: payload.checksum",
        "hub: seal (publish; the edge seals again)",
        "edge: checksum + to_state",
        "edge: build_async",
    ]
    medians["sum: content → applied (without the wire)"] = sum(medians[n] for n in ship) + medians[ship[2]]
    return {"median_s": medians, "min_s": {n: min(v) for n, v in times.items()}, **sizes}


# -- processes --------------------------------------------------------------------------------------


class Processes:
    """Started processes, stopped (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            "TOLLGATE_SECRET_KEY": SECRET_KEY,
            "TOLLGATE_EDGE_TOKEN": EDGE_TOKEN,
        }

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with (self.directory / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        self.running.append(proc)
        return proc

    def wait(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        url: str,
        timeout: float = 180,
        headers: dict[str, str] | None = None,
    ) -> float:
        """Until `url` answers 200; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if proc.poll() is not None:
                log = (self.directory / f"{name}.log").read_text(errors="replace")
                raise SystemExit(f"{name} exited with {proc.returncode}:\n{log[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.05)
        raise SystemExit(f"{name} not ready after {timeout} s (see {self.directory / name}.log)")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


def serve(mode: str, db: Path, core: str, **flags: object) -> tuple[list[str], dict[str, int]]:
    ports = {"port": free_port(), "admin_port": free_port()}
    command = [sys.executable, "-m", "gateway", "serve", "--mode", mode, "--db", f"sqlite:///{db}"]
    command += ["--port", str(ports["port"]), "--admin-port", str(ports["admin_port"])]
    command += ["--drain-s", "0", "--log-level", LOG_LEVEL[0]]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return pinned(core, *command), ports


class Pair:
    """A hub and its edge, running."""

    def __init__(self, procs: Processes, db: Path, args: argparse.Namespace, tag: str) -> None:
        grpc_port = free_port()
        hub_cmd, self.hub_ports = serve("control", db, args.load_core, grpc_port=grpc_port)
        self.hub = procs.start(f"hub-{tag}", hub_cmd)
        self.hub_admin = f"http://127.0.0.1:{self.hub_ports['admin_port']}"
        self.hub_start_s = procs.wait(
            f"hub-{tag}", self.hub, f"http://127.0.0.1:{self.hub_ports['port']}/readyz"
        )
        edge_db = db.with_name(db.stem + "-edge.db")
        edge_cmd, self.edge_ports = serve(
            "edge", edge_db, args.core, hub=f"127.0.0.1:{grpc_port}", edge_id=EDGE_ID, heartbeat_s=1
        )
        self.edge = procs.start(f"edge-{tag}", edge_cmd)
        self.edge_url = f"http://127.0.0.1:{self.edge_ports['port']}"
        self.edge_start_s = procs.wait(f"edge-{tag}", self.edge, self.edge_url + "/readyz")
        self.headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        self.client = httpx.Client(headers=self.headers, timeout=120)
        self.patches = 0
        self.in_sync_s = self.wait_in_sync()

    def stop(self, procs: Processes) -> None:
        self.client.close()
        procs.stop(self.edge)
        procs.stop(self.hub)

    def wait_in_sync(self, timeout: float = 60) -> float:
        """Until the hub lists the edge in_sync and the edge serves the hub's checksum."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            edges = self.client.get(self.hub_admin + "/api/v1/edges").json()["data"]
            mine = next((e for e in edges if e["edge_id"] == EDGE_ID), None)
            if mine is not None and mine["status"] == "in_sync" and mine["checksum"] == self.edge_sync()[0]:
                return time.monotonic() - started
            time.sleep(0.1)
        raise SystemExit(f"the edge is not in sync after {timeout} s: {edges}")

    def edge_sync(self) -> tuple[str, int]:
        """The edge's checksum and the version of the snapshot it serves (moves when one is swapped in)."""
        ready = self.client.get(self.edge_url + "/readyz").json()
        return ready["sync"]["checksum"], int(ready["config_version"])

    def patch(self, llm_id: int) -> None:
        """Change the LLM's default_model (to the other of two values: the content really changes)."""
        self.patches += 1
        body = {"default_model": DEFAULT_MODELS[self.patches % 2]}
        reply = self.client.patch(f"{self.hub_admin}/api/v1/llms/{llm_id}", json=body)
        reply.raise_for_status()

    def push(self) -> dict[str, Any]:
        reply = self.client.post(self.hub_admin + "/api/v1/edges/push", json={})
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        if result["edges"] != [EDGE_ID]:
            raise SystemExit(f"the push reached {result['edges']}, not {EDGE_ID}")
        return result


# -- (b) end to end ---------------------------------------------------------------------------------


def end_to_end(pair: Pair, llm_id: int, pushes: int) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    for n in range(pushes):
        before_checksum, before = pair.edge_sync()
        patch_at = time.perf_counter()
        pair.patch(llm_id)
        pushed_at = time.perf_counter()
        pushed = pair.push()
        answered_at = time.perf_counter()
        seen_at = 0.0
        while True:
            current, version = pair.edge_sync()
            now = time.perf_counter()
            if current != before_checksum and not seen_at:
                seen_at = now
            if version != before:
                break
            if now - pushed_at > 60:
                raise SystemExit("the edge did not apply the push within 60 s")
            time.sleep(0.005)
        if current != pushed["checksums"][""]:
            raise SystemExit(f"the edge applied {current}, the hub pushed {pushed['checksums']}")
        runs.append(
            {
                "patch_s": pushed_at - patch_at,
                "push_call_s": answered_at - pushed_at,
                "push_to_checksum_s": seen_at - pushed_at,
                "push_to_applied_s": now - pushed_at,
                "patch_to_applied_s": now - patch_at,
            }
        )
        r = runs[-1]
        print(
            f"  push {n + 1}: PATCH {r['patch_s']:.3f} s, push call {r['push_call_s']:.3f} s, "
            f"push → checksum at the edge {r['push_to_checksum_s']:.3f} s, "
            f"push → applied {r['push_to_applied_s']:.3f} s, PATCH → applied {r['patch_to_applied_s']:.3f} s",
            flush=True,
        )
        time.sleep(1.0)  # let the heartbeat report it: the next round starts from a quiet edge
    return {
        key: {"min": min(values), "median": statistics.median(values), "max": max(values)}
        for key in runs[0]
        for values in [[r[key] for r in runs]]
    }


# -- (c) latency under load -------------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def python_load(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    """A closed loop of `concurrency` clients posting the chat body; latencies in ms."""
    latencies: list[float] = []
    errors = 0
    payload = json.dumps(BODY).encode()
    headers = {"authorization": f"Bearer {app_key(0)}", "content-type": "application/json"}
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal errors
            while (started := time.perf_counter()) < deadline:
                async with session.post(url, data=payload, headers=headers) as reply:
                    await reply.read()
                    ok = reply.status == 200
                if ok:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    latencies.sort()
    if not latencies:
        return {"rps": 0.0, "requests": 0.0, "errors": float(errors), "p50_ms": 0.0, "p99_ms": 0.0}
    return {
        "rps": len(latencies) / seconds,
        "requests": float(len(latencies)),
        "errors": float(errors),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
    }


async def wrk_load(url: str, script: Path, core: str, concurrency: int, seconds: float) -> dict[str, float]:
    command = pinned(
        core, "wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", str(script), url
    )
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return parse_wrk(out.decode())


async def changes(pair: Pair, llm_id: int, every_s: float, push: bool, stop: asyncio.Event) -> int:
    """A PATCH at the hub every `every_s` (or as fast as the hub answers), each followed by a push."""
    n = 0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await loop.run_in_executor(None, pair.patch, llm_id)
        if push:
            await loop.run_in_executor(None, pair.push)
        n += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, every_s - (loop.time() - started)))
    return n


async def under_load(pair: Pair, llm_id: int, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    url = pair.edge_url + f"/openai/{TRAFFIC_LLM}/v1/chat/completions"
    script = directory / "chat.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {app_key(0)}"\n'
    )
    use_wrk = shutil.which("wrk") is not None and not args.python_load

    async def load(seconds: float) -> dict[str, float]:
        if use_wrk:
            return await wrk_load(url, script, args.load_core, args.concurrency, seconds)
        return await python_load(url, args.concurrency, seconds)

    warm = await load(2)
    if warm.get("requests", 0) == 0 or warm["errors"]:
        raise SystemExit(f"the warm-up load failed: {warm}")
    phases: list[dict[str, Any]] = []
    order = ("idle", "patch", "push")
    for round_ in range(args.rounds):
        for kind in order if round_ % 2 == 0 else tuple(reversed(order)):
            await asyncio.sleep(1.0)  # what the last phase left (a push being applied, a heartbeat) settles
            _, before = pair.edge_sync()
            cpu = cpu_seconds(pair.edge.pid)
            stop = asyncio.Event()
            changer: asyncio.Task[int] | None = None
            if kind != "idle":
                changer = asyncio.create_task(changes(pair, llm_id, args.push_every, kind == "push", stop))
            result: dict[str, Any] = dict(await load(args.seconds))
            stop.set()
            result["changes"] = await changer if changer is not None else 0
            result["edge_cpu_us_per_request"] = (
                (cpu_seconds(pair.edge.pid) - cpu) / max(1, result["requests"]) * 1e6
            )
            await asyncio.sleep(1.5)
            result["applied"] = pair.edge_sync()[1] - before
            result.update(kind=kind, round=round_ + 1)
            phases.append(result)
            print(
                f"  round {round_ + 1} {kind:5}: {result['rps']:6.0f} req/s  p50 {result['p50_ms']:.3f} ms  "
                f"p99 {result['p99_ms']:.3f} ms  errors {result['errors']:.0f}  "
                f"PATCHes {result['changes']}  snapshots applied {result['applied']}  "
                f"edge CPU {result['edge_cpu_us_per_request']:.0f} µs/req",
                flush=True,
            )
    summary: dict[str, Any] = {"client": "wrk" if use_wrk else "aiohttp", "phases": phases}
    for kind in order:
        mine = [p for p in phases if p["kind"] == kind]
        summary[kind] = {k: statistics.median(p[k] for p in mine) for k in ("rps", "p50_ms", "p99_ms")}
    for base in ("idle", "patch"):
        summary[f"p99_push_vs_{base}"] = summary["push"]["p99_ms"] / summary[base]["p99_ms"]
        summary[f"p50_push_vs_{base}"] = summary["push"]["p50_ms"] / summary[base]["p50_ms"]
    return summary


# -- report -----------------------------------------------------------------------------------------


def report_breakdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['llms']:,} LLMs, {result['apps']:,} apps; content {result['content_bytes'] / 1e6:.2f} MB",
        "",
        "| step | median | min |",
        "|---|---|---|",
    ]
    for name, value in result["median_s"].items():
        low = result["min_s"].get(name)
        lines.append(
            f"| {name} | {value * 1000:,.0f} ms | {'' if low is None else f'{low * 1000:,.0f} ms'} |"
        )
    return "\n".join(lines)


def report_e2e(result: dict[str, Any]) -> str:
    lines = ["| | min | median | max |", "|---|---|---|---|"]
    for name, stats in result.items():
        lines.append(f"| {name} | {stats['min']:.3f} s | {stats['median']:.3f} s | {stats['max']:.3f} s |")
    return "\n".join(lines)


def report_load(name: str, result: dict[str, Any]) -> str:
    lines = [
        f"{name} ({result['client']}):",
        "",
        "| phase | round | req/s | p50 | p99 | PATCHes | snapshots applied | edge CPU/req | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        lines.append(
            f"| {p['kind']} | {p['round']} | {p['rps']:,.0f} | {p['p50_ms']:.3f} ms | {p['p99_ms']:.3f} ms "
            f"| {p['changes']} | {p['applied']} | {p['edge_cpu_us_per_request']:.0f} µs | {p['errors']:.0f} |"
        )
    lines.append("")
    idle, patch, push = (result[k]["p99_ms"] for k in ("idle", "patch", "push"))
    lines.append(
        f"median p99: idle {idle:.3f} ms, patch {patch:.3f} ms, push {push:.3f} ms; "
        f"push/idle {result['p99_push_vs_idle']:.2f}, push/patch {result['p99_push_vs_patch']:.2f}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--llms", type=int, default=1000)
    parser.add_argument("--apps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="(a): times each step runs (median reported)")
    parser.add_argument("--pushes", type=int, default=5, help="(b): PATCH + push rounds")
    parser.add_argument("--seconds", type=float, default=10, help="(c): seconds of load per phase")
    parser.add_argument("--rounds", type=int, default=2, help="(c): rounds of idle/patch/push phases")
    parser.add_argument("--push-every", type=float, default=0.5, help="(c): seconds between changes")
    parser.add_argument("--concurrency", type=int, default=16, help="(c): connections of the load")
    parser.add_argument("--small-llms", type=int, default=20, help="(c): the small configuration")
    parser.add_argument("--small-apps", type=int, default=1000)
    parser.add_argument(
        "--large-load-apps",
        type=int,
        default=1000,
        help="(c): apps beside the --llms LLMs (apps do not travel to edges; a hub's PATCH grows with them)",
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: a, b, c-small, c-large")
    parser.add_argument("--python-load", action="store_true", help="the aiohttp client even if wrk is there")
    parser.add_argument("--core", default="0", help="the edge's core")
    parser.add_argument(
        "--load-core", default="1", help="the core of the hub, the mock upstream and the load"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--log-level", default="warning", help="of the hub and the edge (logs: --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    args = parser.parse_args()
    if args.llms < 2:
        raise SystemExit("--llms must be at least 2 (one serves the traffic, another one is PATCHed)")
    skip = set(filter(None, args.skip.split(",")))
    LOG_LEVEL[0] = args.log_level

    directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-sync-"))
    box = SecretBox.from_passphrase(SECRET_KEY)
    procs = Processes(directory)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    text: list[str] = []
    try:
        upstream_port = free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        upstream_auth = {"authorization": f"Bearer {UPSTREAM_KEY}"}
        mock = procs.start(
            "upstream",
            pinned(args.load_core, sys.executable, "-m", "mocks.openai", "--port", str(upstream_port),
                   "--api-key", UPSTREAM_KEY),
        )  # fmt: skip
        large = directory / "large.db"
        print(f"filling {large} with {args.llms:,} LLMs and {args.apps:,} apps", flush=True)
        filled = asyncio.run(fill(large, args.llms, args.apps, upstream_url, box))
        print(f"  {filled['fill_s']:.1f} s", flush=True)
        report["fill_s"] = filled["fill_s"]
        procs.wait("upstream", mock, upstream_url + "/v1/models", timeout=30, headers=upstream_auth)

        if "a" not in skip:
            print("(a) in process", flush=True)
            report["breakdown"] = asyncio.run(breakdown(large, box, args.repeat))
            text += ["(a) in process", "", report_breakdown(report["breakdown"]), ""]
            print(text[-2], flush=True)

        if "b" not in skip:
            pair = Pair(procs, large, args, "large")
            report["startup_s"] = {
                "hub": pair.hub_start_s,
                "edge": pair.edge_start_s,
                "in_sync": pair.in_sync_s,
            }
            startup = (
                f"hub ready in {pair.hub_start_s:.1f} s, edge ready in {pair.edge_start_s:.1f} s, "
                f"in sync {pair.in_sync_s:.1f} s later"
            )
            print(startup, flush=True)
            print("(b) end to end", flush=True)
            report["end_to_end"] = end_to_end(pair, filled["patch_id"], args.pushes)
            text += [
                f"(b) end to end, {args.pushes} pushes; {startup}",
                "",
                report_e2e(report["end_to_end"]),
                "",
            ]
            pair.stop(procs)

        cases = []
        if "c-small" not in skip:
            cases.append(("small", args.small_llms, args.small_apps))
        if "c-large" not in skip:
            cases.append(("llms", args.llms, args.large_load_apps))
        for tag, llms, apps in cases:
            db = directory / f"{tag}.db"
            case = asyncio.run(fill(db, llms, apps, upstream_url, box))
            pair = Pair(procs, db, args, tag)
            name = f"(c) {llms:,} LLMs, {apps:,} apps"
            print(name, flush=True)
            report[f"load_{tag}"] = asyncio.run(under_load(pair, case["patch_id"], args, directory))
            text += [report_load(name, report[f"load_{tag}"]), ""]
            pair.stop(procs)
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"kept {directory}")
    print("\n" + "\n".join(text))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sync.json").write_text(json.dumps(report, indent=2))
    (args.out / "sync.md").write_text(f"{report['date']} — {report['machine']}\n\n" + "\n".join(text))
    print(f"written to {args.out}/sync.json and sync.md")


if __name__ == "__main__":
    main()
