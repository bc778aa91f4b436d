"""What the stack costs: the bare pass-through with aiohttp, with httpx instead, and with aiohttp behind
Starlette's router; same server, same upstream, same load.

python bench/clients.py [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from run import BENCH, UPSTREAM_KEY, Target, free_port, measure, pinned, process, write_scripts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--core", default="0")
    parser.add_argument("--load-core", default="1")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-clients-"))
    scripts = write_scripts(tmp)
    up_port, a_port, h_port, s_port = free_port(), free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    python = sys.executable
    mock = pinned(args.load_core, python, "-m", "mocks.openai", "--port", str(up_port),
                  "--api-key", UPSTREAM_KEY)  # fmt: skip

    def bare(port: int, client: str, *extra: str) -> list[str]:
        return pinned(args.core, python, str(BENCH / "passthrough.py"), "--port", str(port), "--upstream",
                      upstream, "--api-key", UPSTREAM_KEY, "--client", client, *extra)  # fmt: skip

    with (
        process(mock, upstream + "/v1/models", tmp / "upstream.log"),
        process(bare(a_port, "aiohttp"), f"http://127.0.0.1:{a_port}/", tmp / "aiohttp.log") as a,
        process(bare(h_port, "httpx"), f"http://127.0.0.1:{h_port}/", tmp / "httpx.log") as h,
        process(
            bare(s_port, "aiohttp", "--starlette"), f"http://127.0.0.1:{s_port}/healthz", tmp / "s.log"
        ) as s,
    ):
        targets = [
            Target("aiohttp", f"http://127.0.0.1:{a_port}/v1/chat/completions", a.pid),
            Target("httpx", f"http://127.0.0.1:{h_port}/v1/chat/completions", h.pid),
            Target("aiohttp+starlette", f"http://127.0.0.1:{s_port}/openai/gpt/v1/chat/completions", s.pid),
        ]
        for _ in range(args.rounds):
            for target in targets:
                measure(target, scripts["app"], args.load_core, args)
    for target in targets:
        rps = statistics.median(r["rps"] for r in target.runs)
        cpu = statistics.median(r["cpu_us_per_request"] for r in target.runs)
        print(f"{target.name:18} {rps:8,.0f} req/s  {cpu:6.0f} µs CPU/request")


if __name__ == "__main__":
    main()
