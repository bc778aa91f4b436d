"""Several gateways as one (issue 8): two instances behind HAProxy against one, and what PostgreSQL takes.

    python bench/instances.py                      # needs wrk, haproxy, and PostgreSQL at 127.0.0.1:5432
    python bench/instances.py --skip load          # only the store figures

(a) Throughput: one gateway, then two (each on its own core), on one fresh PostgreSQL database, behind
    HAProxy (round robin, /readyz checks), loaded by wrk at 64 connections; the upstream is a fixed
    OpenAI answer served by the same HAProxy (cheap, so the cores go to the gateways); and
    the gateways' CPU per request in each layout (the same in both: the instances share nothing on the
    request path, so the throughput of N instances is N times one's wherever each has a free core).
(b) The analytics write rate PostgreSQL sustains (COPY batches of 1,000, as the writer sends them) and
    SQLite's, for --seconds each.
(c) A usage query over a month at --records analytics records (30 days, 50 apps): its time, per group.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import APP_KEY, cpu_seconds, free_port, parse_wrk, pinned, process, tollgate_config, write_scripts

from store.postgres import PostgresStore
from store.records import AnalyticsRecord, UsageQuery
from store.sqlite import SqliteStore
from tests.support import create_database, drop_database

SECRET = {"TOLLGATE_SECRET_KEY": "bench-shared-master-key"}


def records(count: int, start: float, span_s: float, apps: int = 50) -> list[AnalyticsRecord]:
    rng = random.Random(count)
    return [
        AnalyticsRecord(
            timestamp=start + rng.random() * span_s,
            request_id=f"{i:016x}",
            interaction_type="chat",
            status_code=200 if rng.random() > 0.02 else 500,
            app_id=rng.randrange(apps) + 1,
            app_name=f"app-{rng.randrange(apps)}",
            llm_id=1,
            llm_slug="gpt",
            model_name="gpt-4o-mini",
            prompt_tokens=rng.randrange(10, 2000),
            response_tokens=rng.randrange(10, 800),
            total_tokens=1000,
            cost=rng.random() / 1000,
            latency_ms=rng.random() * 900 + 100,
        )
        for i in range(count)
    ]


async def write_rate(store: PostgresStore | SqliteStore, seconds: float) -> float:
    batch = records(1000, time.time(), 60)
    written = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await store.insert_records(batch)
        written += len(batch)
    return written / (time.perf_counter() - started)


async def stores(database: str, seconds: float, count: int) -> dict[str, float]:
    out: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-bench-store-"))
    try:
        postgres = PostgresStore(database)
        await postgres.open()
        sqlite = SqliteStore(tmp / "bench.db")
        await sqlite.open()
        out["postgres_records_per_s"] = await write_rate(postgres, seconds)
        out["sqlite_records_per_s"] = await write_rate(sqlite, seconds)
        await postgres.pool.execute("TRUNCATE analytics")
        month = time.time() - 30 * 86400
        for start in range(0, count, 50_000):
            await postgres.insert_records(records(min(50_000, count - start), month, 30 * 86400))
        await postgres.pool.execute("ANALYZE analytics")
        for group in ("app", "day"):
            times = []
            for _ in range(3):
                began = time.perf_counter()
                await postgres.usage(UsageQuery(group_by=group, since=month))  # type: ignore[arg-type]
                times.append(time.perf_counter() - began)
            out[f"usage_by_{group}_ms"] = statistics.median(times) * 1000
        await postgres.close()
        await sqlite.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# What the static upstream answers every chat call: OpenAI's shape, with usage for the analytics.
ANSWER = (
    '{"id":"chatcmpl-bench","object":"chat.completion","created":1764000000,"model":"gpt-4o-mini",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the static upstream."},'
    '"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
)


def haproxy_config(path: Path, port: int, backends: list[int], upstream: int) -> None:
    """The balancer in front of the gateways, and (another frontend of the same HAProxy) the upstream: a
    fixed OpenAI answer from C, so the two cores go to the gateways rather than to a Python mock."""
    servers = "\n".join(f"    server g{i} 127.0.0.1:{p} check" for i, p in enumerate(backends))
    path.write_text(
        "global\n    nbthread 1\n"
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n"
        f"frontend llm\n    bind 127.0.0.1:{port}\n    default_backend gateways\n"
        "backend gateways\n    balance roundrobin\n    option httpchk GET /readyz\n"
        "    http-reuse always\n" + servers + "\n"
        f"frontend upstream\n    bind 127.0.0.1:{upstream}\n"
        "    http-request return status 200 content-type application/json string '" + ANSWER + "'\n"
    )


def load(args: argparse.Namespace) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-bench-instances-"))
    database = create_database()
    ports = {n: free_port() for n in ("upstream", "a", "a_admin", "b", "b_admin", "lb")}
    upstream_url = f"http://127.0.0.1:{ports['upstream']}"
    (tmp / "tollgate.yaml").write_text(yaml.safe_dump(tollgate_config(upstream_url)))
    scripts = write_scripts(tmp)
    python = sys.executable

    def gateway(name: str, core: str, config: bool) -> list[str]:
        command = [python, "-m", "gateway", "serve", "--db", database, "--port", str(ports[name]),
                   "--admin-port", str(ports[f"{name}_admin"]), "--log-level", "warning"]  # fmt: skip
        return pinned(core, *command, *(["--config", str(tmp / "tollgate.yaml")] if config else []))

    out: dict[str, float] = {}
    os.environ.update(SECRET)
    try:
        with (
            process(gateway("a", "0", True), f"http://127.0.0.1:{ports['a']}/readyz", tmp / "a.log") as a,
            process(gateway("b", "1", False), f"http://127.0.0.1:{ports['b']}/readyz", tmp / "b.log") as b,
        ):
            for name, backends in (("one", [ports["a"]]), ("two", [ports["a"], ports["b"]])):
                cfg = tmp / f"haproxy-{name}.cfg"
                haproxy_config(cfg, ports["lb"], backends, ports["upstream"])
                proxy = subprocess.Popen(
                    ["haproxy", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                time.sleep(1.5)
                try:
                    url = f"http://127.0.0.1:{ports['lb']}/openai/gpt/v1/chat/completions"
                    runs = []
                    for _ in range(args.rounds):
                        cpu = [cpu_seconds(a.pid), cpu_seconds(b.pid)]
                        result = subprocess.run(
                            ["wrk", "-t2", "-c64", f"-d{args.duration}s", "-s", str(scripts["app"]), url],
                            capture_output=True, text=True, check=True,
                        )  # fmt: skip
                        run = parse_wrk(result.stdout)
                        used = [cpu_seconds(a.pid) - cpu[0], cpu_seconds(b.pid) - cpu[1]]
                        # The gateways' own CPU per request: what one request costs whichever instance
                        # serves it. The same in both layouts means the instances share nothing on the
                        # request path, so N instances on N free cores serve N times one's throughput.
                        run["cpu_us_per_request"] = sum(used) / run["requests"] * 1e6
                        # gateway a alone on core 0 in both layouts; round robin sends it 1/len(backends)
                        run["a_cpu_us_per_request"] = used[0] / (run["requests"] / len(backends)) * 1e6
                        runs.append(run)
                    for key in ("rps", "cpu_us_per_request", "a_cpu_us_per_request"):
                        out[f"{name}_instance_{key}"] = statistics.median(r[key] for r in runs)
                    out[f"{name}_instance_errors"] = sum(r["errors"] for r in runs)
                finally:
                    proxy.terminate()
                    proxy.wait()
    finally:
        drop_database(database)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5, help="(b): seconds of writes per store")
    parser.add_argument("--records", type=int, default=1_000_000, help="(c): analytics records")
    parser.add_argument("--skip", default="", help="load, stores")
    args = parser.parse_args()
    result: dict[str, float] = {}
    if "load" not in args.skip:
        if not (shutil.which("wrk") and shutil.which("haproxy")):
            raise SystemExit("the load needs wrk and haproxy (apt install wrk haproxy), or --skip load")
        result.update(load(args))
    if "stores" not in args.skip:
        database = create_database()
        try:
            result.update(asyncio.run(stores(database, args.seconds, args.records)))
        finally:
            drop_database(database)
    for key, value in result.items():
        print(f"{key:28} {value:12,.1f}")
    print(f"(app key {APP_KEY}; PostgreSQL at 127.0.0.1:5432)")


if __name__ == "__main__":
    main()
