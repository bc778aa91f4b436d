"""Instructions per request, counted by callgrind: a repeatable A/B for hot-path changes.

Throughput on a shared virtual machine moves by ±15% from run to run; the instruction count of the same
work moves by less than 0.1%. This runs Tollgate and the bare pass-through under valgrind, sends the
same requests to each, and counts what each process executed (all threads, analytics writer included).

    python bench/instructions.py [--requests 2000] [--concurrency 16]

Needs valgrind (apt install valgrind). Takes about a minute per target.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import yaml
from run import APP_KEY, BENCH, BODY, UPSTREAM_KEY, free_port, pinned, process, tollgate_config


async def fire(url: str, count: int, concurrency: int, key: str = APP_KEY) -> int:
    """Send `count` chat requests, `concurrency` at a time; returns how many failed."""
    headers = {"authorization": f"Bearer {key}"}
    failed = 0
    remaining = iter(range(count))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            nonlocal failed
            for _ in remaining:
                async with session.post(url, json=BODY, headers=headers) as response:
                    await response.read()
                    failed += response.status != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


def count(command: list[str], ready: str, url: str, out: Path, args: argparse.Namespace) -> float:
    """Instructions per request of `command`'s process while it answers `args.requests` requests."""
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    proc = subprocess.Popen(valgrind + command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                httpx.get(ready, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"not ready under valgrind: {' '.join(command)}") from None
                time.sleep(1)
        asyncio.run(fire(url, 300, args.concurrency))  # warm up: imports, pools, caches
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True, check=True)
        failed = asyncio.run(fire(url, args.requests, args.concurrency))
        time.sleep(1.5)  # the analytics writer flushes what these requests recorded
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    if failed:
        raise SystemExit(f"{failed} requests failed")
    total = 0
    for dump in out.parent.glob(out.name + "*"):  # one file per dump; `totals:` is each one's count
        total += max((int(line.split()[1]) for line in dump.read_text().splitlines()
                      if line.startswith("totals:")), default=0)  # fmt: skip
    return total / args.requests


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--load-core", default="1")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is needed (Debian/Ubuntu: apt install valgrind)")
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-instructions-"))
    up, bare, gw, admin = free_port(), free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up}"
    config = tmp / "tollgate.yaml"
    config.write_text(yaml.safe_dump(tollgate_config(upstream)))
    python = sys.executable
    mock = pinned(args.load_core, python, "-m", "mocks.openai", "--port", str(up), "--api-key", UPSTREAM_KEY)
    with process(mock, upstream + "/v1/models", tmp / "upstream.log"):
        passthrough = count(
            [python, str(BENCH / "passthrough.py"), "--port", str(bare), "--upstream", upstream,
             "--api-key", UPSTREAM_KEY],
            f"http://127.0.0.1:{bare}/", f"http://127.0.0.1:{bare}/v1/chat/completions",
            tmp / "bare.cg", args,
        )  # fmt: skip
        tollgate = count(
            [python, "-m", "gateway", "serve", "--config", str(config), "--db", f"sqlite:///{tmp / 't.db'}",
             "--port", str(gw), "--admin-port", str(admin), "--log-level", "warning", "--drain-s", "0"],
            f"http://127.0.0.1:{gw}/readyz", f"http://127.0.0.1:{gw}/openai/gpt/v1/chat/completions",
            tmp / "tollgate.cg", args,
        )  # fmt: skip
    print(f"passthrough {passthrough:10,.0f} instructions/request")
    share = f"{passthrough / tollgate:.0%} of the pass-through's rate"
    print(f"tollgate    {tollgate:10,.0f} instructions/request  ({share})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
