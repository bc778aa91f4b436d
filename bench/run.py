"""Tollgate's benchmark: the gateway, pinned to one core, against a bare pass-through on the same stack
and against the mock upstream called directly.

    python bench/run.py                       # 3 rounds of 10 s, results in bench/results/
    python bench/run.py --duration 5 --rounds 1

Load comes from wrk (apt install wrk), pinned with the mock upstream to the other core. For each target:
requests/s at 64 connections (median of the rounds), latency p50/p99 at 1 connection, CPU time per
request of the target's process (from /proc), and its resident memory after the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

BENCH = Path(__file__).resolve().parent
UPSTREAM_KEY = "sk-bench-upstream-key"
APP_KEY = "tg-demo-0001"
ADMIN_TOKEN = "bench-admin-token"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello, how are you today?"}]}
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    name: str
    url: str
    pid: int
    runs: list[dict[str, float]] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: str, *command: str) -> list[str]:
    return ["taskset", "-c", core, *command] if shutil.which("taskset") else list(command)


@contextmanager
def process(command: list[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{command[0]} exited: {log.read_text()[-2000:]}")
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"not ready: {' '.join(command)}") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def write_scripts(directory: Path) -> dict[str, Path]:
    """wrk scripts posting the chat body: with the app key ("app") and with the upstream's key."""
    scripts = {"app": directory / "chat-app.lua", "upstream": directory / "chat-upstream.lua"}
    for name, key in (("app", APP_KEY), ("upstream", UPSTREAM_KEY)):
        scripts[name].write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        )
    return scripts


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime, all threads


def memory_mib(pid: int) -> tuple[float, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def wrk(url: str, script: Path, core: str, connections: int, seconds: int, latency: bool = False) -> str:
    command = pinned(core, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url)
    if latency:
        command.insert(-1, "--latency")
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def parse_wrk(output: str) -> dict[str, float]:
    result: dict[str, float] = {}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result["rps"] = float(match.group(1))
    if match := re.search(r"(\d+) requests in", output):
        result["requests"] = float(match.group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    result["errors"] += sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE):
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
        result[f"p{pct}_ms"] = float(value) * scale
    return result


def analytics_count(admin_port: int) -> int:
    """Records written by the gateway (a check that analytics were on and kept up)."""
    time.sleep(1)
    usage = httpx.get(
        f"http://127.0.0.1:{admin_port}/api/v1/analytics/usage",
        params={"group_by": "app"},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()["data"]
    return sum(int(row["requests"]) for row in usage)


def measure(target: Target, script: Path, core: str, args: argparse.Namespace) -> None:
    warm = parse_wrk(wrk(target.url, script, core, args.connections, 2))
    before = cpu_seconds(target.pid)
    load = parse_wrk(wrk(target.url, script, core, args.connections, args.duration))
    used = cpu_seconds(target.pid) - before
    single = parse_wrk(wrk(target.url, script, core, 1, args.duration, latency=True))
    rss, peak = memory_mib(target.pid)
    target.runs.append(
        {
            "rps": load["rps"],
            "errors": load["errors"] + single["errors"],
            "cpu_us_per_request": used / load["requests"] * 1e6,
            "p50_ms": single["p50_ms"],
            "p99_ms": single["p99_ms"],
            "rss_mib": rss,
            "peak_rss_mib": peak,
            "sent": warm["requests"] + load["requests"] + single["requests"],
        }
    )
    run = target.runs[-1]
    latency = f"p50 {run['p50_ms']:.3f} ms  p99 {run['p99_ms']:.3f} ms"
    cost = f"{run['cpu_us_per_request']:.0f} µs CPU/req  {run['rss_mib']:.0f} MiB"
    print(f"  {target.name:12} {run['rps']:8.0f} req/s  {latency}  {cost}", flush=True)


def summary(targets: list[Target]) -> dict[str, dict[str, float]]:
    out = {}
    for target in targets:
        runs = target.runs
        out[target.name] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        out[target.name]["errors"] = sum(run["errors"] for run in runs)
        del out[target.name]["sent"]
    direct, bare, gateway = out["upstream"], out["passthrough"], out["tollgate"]
    for name in ("passthrough", "tollgate"):
        row = out[name]
        row["added_p50_ms"] = row["p50_ms"] - direct["p50_ms"]
        row["added_p99_ms"] = row["p99_ms"] - direct["p99_ms"]
    gateway["throughput_vs_passthrough"] = gateway["rps"] / bare["rps"]
    gateway["added_p50_vs_passthrough_ms"] = gateway["p50_ms"] - bare["p50_ms"]
    return out


def markdown(result: dict[str, dict[str, float]]) -> str:
    rows = [
        "| target | req/s @64 | vs pass-through | p50 @1 | p99 @1 | added p50 | added p99 | CPU/req | RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    bare = result["passthrough"]["rps"]
    for name, r in result.items():
        added = (
            (f"{r['added_p50_ms']:.3f} ms", f"{r['added_p99_ms']:.3f} ms")
            if "added_p50_ms" in r
            else ("", "")
        )
        rows.append(
            f"| {name} | {r['rps']:,.0f} | {r['rps'] / bare:.0%} | {r['p50_ms']:.3f} ms "
            f"| {r['p99_ms']:.3f} ms | {added[0]} | {added[1]} "
            f"| {r['cpu_us_per_request']:.0f} µs | {r['rss_mib']:.0f} MiB |"
        )
    return "\n".join(rows)


def tollgate_config(upstream_url: str) -> dict[str, object]:
    """Every policy that exists on: app-key auth, grants through the owner's group, allowed_models,
    default_model, pricing and analytics."""
    return {
        "secrets": {"UPSTREAM": UPSTREAM_KEY},
        "llms": [
            {
                "slug": "gpt",
                "vendor": "openai",
                "api_base": upstream_url + "/v1",
                "api_key": "$SECRET/UPSTREAM",
                "allowed_models": ["gpt-4o.*"],
                "default_model": "gpt-4o-mini",
            }
        ],
        "prices": [{"vendor": "openai", "model": "gpt-4o-mini", "input_per_1m": 0.15, "output_per_1m": 0.6}],
        "users": [{"email": "bench@example.com", "role": "developer", "groups": ["bench"]}],
        "groups": [{"name": "bench", "llms": ["gpt"]}],
        "apps": [{"name": "bench", "owner": "bench@example.com", "api_key": APP_KEY, "llms": ["gpt"]}],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--core", default="0", help="the core the gateway and the pass-through are pinned to")
    parser.add_argument("--load-core", default="1", help="the core of the mock upstream and wrk")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed for the load (Debian/Ubuntu: apt install wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
    ports = {name: free_port() for name in ("upstream", "passthrough", "tollgate", "admin")}
    upstream_url = f"http://127.0.0.1:{ports['upstream']}"
    scripts = write_scripts(tmp)
    config = tmp / "tollgate.yaml"
    config.write_text(yaml.safe_dump(tollgate_config(upstream_url)))
    python = sys.executable
    upstream_cmd = pinned(
        args.load_core,
        python,
        "-m",
        "mocks.openai",
        "--port",
        str(ports["upstream"]),
        "--api-key",
        UPSTREAM_KEY,
    )
    bare_cmd = pinned(
        args.core,
        python,
        str(BENCH / "passthrough.py"),
        "--port",
        str(ports["passthrough"]),
        "--upstream",
        upstream_url,
        "--api-key",
        UPSTREAM_KEY,
    )
    gateway_cmd = pinned(
        args.core,
        python,
        "-m",
        "gateway",
        "serve",
        "--config",
        str(config),
        "--db",
        f"sqlite:///{tmp / 'bench.db'}",
        "--port",
        str(ports["tollgate"]),
        "--admin-port",
        str(ports["admin"]),
        "--log-level",
        "warning",
        "--drain-s",
        "0",
    )
    with (
        process(upstream_cmd, upstream_url + "/v1/models", tmp / "upstream.log") as up,
        process(bare_cmd, f"http://127.0.0.1:{ports['passthrough']}/", tmp / "passthrough.log") as bare,
        process(gateway_cmd, f"http://127.0.0.1:{ports['tollgate']}/readyz", tmp / "tollgate.log") as gateway,
    ):
        targets = [
            Target("upstream", upstream_url + "/v1/chat/completions", up.pid),
            Target("passthrough", f"http://127.0.0.1:{ports['passthrough']}/v1/chat/completions", bare.pid),
            Target(
                "tollgate",
                f"http://127.0.0.1:{ports['tollgate']}/openai/gpt/v1/chat/completions",
                gateway.pid,
            ),
        ]
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", flush=True)
            for target in targets:
                # the mock wants its own key; the pass-through and the gateway add it themselves
                script = scripts["upstream" if target.name == "upstream" else "app"]
                measure(target, script, args.load_core, args)
        recorded = analytics_count(ports["admin"])
    result = summary(targets)
    table = markdown(result)
    print("\n" + table)
    for name, r in result.items():
        if r["errors"]:
            print(f"WARNING: {name} had {r['errors']:.0f} failed requests", file=sys.stderr)
    python_version = platform.python_version()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {python_version}, {platform.platform()}"
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    report = {
        "date": stamp,
        "machine": machine,
        "args": {k: str(v) for k, v in vars(args).items()},
        "result": result,
        "runs": {t.name: t.runs for t in targets},
    }
    (args.out / "latest.json").write_text(json.dumps(report, indent=2))
    (args.out / "latest.md").write_text(f"{stamp} — {machine}\n\n{table}\n")
    sent = sum(run["sent"] for run in targets[2].runs)
    print(f"tollgate recorded {recorded:,} analytics records for {sent:,} requests")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwritten to {args.out}/latest.json and latest.md")


if __name__ == "__main__":
    main()
