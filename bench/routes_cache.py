"""Routes and the response cache (issue 7): what a route adds over calling its LLM directly, and what a
cache hit saves over the upstream path.

    python bench/routes_cache.py                  # 3 interleaved rounds of 8 s
    python bench/routes_cache.py --duration 5 --rounds 1

One gateway (pinned to --core) serves three paths on the same mock upstream (pinned with wrk to
--load-core): `direct`, an LLM called by its slug; `route`, a weighted route over two healthy LLMs on
that mock (every policy of the direct path, plus the route); `cache hit`, an LLM with `cache: {mode:
exact}` asked the same question (every call after the first is a hit). For each: requests/s at 64
connections and latency p50/p99 at 1 connection (medians of the rounds). The targets of issue 7: a hit
answers with at least twice the direct path's throughput; a route adds under 0.05 ms p50.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import APP_KEY, BODY, UPSTREAM_KEY, free_port, parse_wrk, pinned, process, tollgate_config, wrk

PATHS = {"direct": ("gpt", "gpt-4o-mini"), "route": ("duo", "duo"), "cache hit": ("cached", "gpt-4o-mini")}


def config(upstream_url: str) -> dict[str, object]:
    base = tollgate_config(upstream_url)
    gpt: dict[str, object] = base["llms"][0]  # type: ignore[index]
    base["llms"] = [
        gpt,
        {**gpt, "slug": "gpt2"},
        {**gpt, "slug": "cached", "cache": {"mode": "exact", "ttl_s": 3600}},
    ]
    base["routes"] = [{"slug": "duo", "strategy": "weighted", "targets": [{"llm": "gpt"}, {"llm": "gpt2"}]}]
    llms = ["gpt", "gpt2", "cached", "duo"]
    base["groups"] = [{"name": "bench", "llms": llms}]
    base["apps"][0]["llms"] = llms  # type: ignore[index]
    return base


def script(directory: Path, name: str, model: str) -> Path:
    path = directory / f"{name.replace(' ', '-')}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps({**BODY, 'model': model}))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {APP_KEY}"\n'
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--core", default="0")
    parser.add_argument("--load-core", default="1")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed for the load (Debian/Ubuntu: apt install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-bench-routes-"))
    ports = {name: free_port() for name in ("upstream", "tollgate", "admin")}
    upstream_url = f"http://127.0.0.1:{ports['upstream']}"
    (tmp / "tollgate.yaml").write_text(yaml.safe_dump(config(upstream_url)))
    python = sys.executable
    upstream = pinned(args.load_core, python, "-m", "mocks.openai", "--port", str(ports["upstream"]),
                      "--api-key", UPSTREAM_KEY)  # fmt: skip
    serve = ["-m", "gateway", "serve", "--config", str(tmp / "tollgate.yaml"), "--db",
             f"sqlite:///{tmp / 'b.db'}", "--port", str(ports["tollgate"]), "--admin-port",
             str(ports["admin"]), "--log-level", "warning"]  # fmt: skip
    gateway = pinned(args.core, python, *serve)
    scripts = {name: script(tmp, name, model) for name, (_, model) in PATHS.items()}
    url = f"http://127.0.0.1:{ports['tollgate']}/openai/{{}}/v1/chat/completions"
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in PATHS}
    with (
        process(upstream, upstream_url + "/v1/models", tmp / "upstream.log"),
        process(gateway, f"http://127.0.0.1:{ports['tollgate']}/readyz", tmp / "tollgate.log"),
    ):
        for name, (slug, _) in PATHS.items():  # warm up (and fill the cache)
            wrk(url.format(slug), scripts[name], args.load_core, args.connections, 2)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", flush=True)
            for name, (slug, _) in PATHS.items():
                load = parse_wrk(
                    wrk(url.format(slug), scripts[name], args.load_core, args.connections, args.duration)
                )
                single = parse_wrk(
                    wrk(url.format(slug), scripts[name], args.load_core, 1, args.duration, latency=True)
                )
                run = {"rps": load["rps"], "p50_ms": single["p50_ms"], "p99_ms": single["p99_ms"],
                       "errors": load["errors"] + single["errors"]}  # fmt: skip
                runs[name].append(run)
                latency = f"p50 {run['p50_ms']:.3f} ms  p99 {run['p99_ms']:.3f} ms"
                print(f"  {name:10} {run['rps']:8.0f} req/s  {latency}", flush=True)
    result = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    direct = result["direct"]
    print("\n| path | req/s @64 | vs direct | p50 @1 | p99 @1 | p50 vs direct | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, r in result.items():
        added = r["p50_ms"] - direct["p50_ms"]
        print(f"| {name} | {r['rps']:,.0f} | {r['rps'] / direct['rps']:.2f}× | {r['p50_ms']:.3f} ms | "
              f"{r['p99_ms']:.3f} ms | {added:+.3f} ms | {r['errors']:.0f} |")  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
