"""What the policy chain costs: the gateway with every policy on against the same gateway bare.

    python bench/chain.py                       # 3 rounds of 10 s, results in bench/results/chain.*
    python bench/chain.py --duration 5 --rounds 1

Both gateways serve the same 2 KB chat prompt to the same mock upstream, pinned to one core, one after
the other in interleaved rounds. "bare" has app-key auth, grants, allowed_models, pricing and analytics
(bench/run.py's configuration). "policies" adds, on the same app and LLM: a pii_redact filter (every
entity) on the request, an rpm and tpm limit of the app counted in Redis (`--redis`), an LLM rpm limit,
and monthly budgets on the app and the LLM (a reservation and a settlement per request). Limits are set
high enough never to refuse. The acceptance of issue 5: "policies" adds under 0.3 ms p50 over "bare".
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    APP_KEY,
    BENCH,
    UPSTREAM_KEY,
    Target,
    free_port,
    measure,
    pinned,
    process,
    tollgate_config,
)

PROMPT = (
    "Our quarterly planning meeting covered the roadmap for the next two releases, the migration of the "
    "billing service to the new event bus, and the hiring plan for the platform team. Each section below "
    "summarises what was agreed and what remains open, so that the teams that could not attend can catch "
    "up before Friday's review. "
) * 7
BODY = {"model": "gpt-4o-mini", "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT[:2048]}]}


def policy_config(upstream_url: str) -> dict[str, object]:
    config = tollgate_config(upstream_url)
    config["filters"] = [{"name": "pii", "phase": "post_auth", "kind": "pii_redact"}]
    llm = config["llms"][0]  # type: ignore[index]
    llm.update(filters=["pii"], rate_limit={"rpm": 100_000_000}, monthly_budget_usd=1_000_000)
    app = config["apps"][0]  # type: ignore[index]
    app.update(rate_limit={"rpm": 100_000_000, "tpm": 2_000_000_000}, monthly_budget_usd=1_000_000)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--core", default="0")
    parser.add_argument("--load-core", default="1")
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/15", help="the counters' Redis ('' for in-process ones)"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed for the load (Debian/Ubuntu: apt install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="tollgate-chain-"))
    script = tmp / "chat.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {APP_KEY}"\n'
    )
    upstream_port = free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    python = sys.executable
    upstream_cmd = pinned(
        args.load_core, python, "-m", "mocks.openai", "--port", str(upstream_port), "--api-key", UPSTREAM_KEY
    )

    def gateway(name: str, config: dict[str, object], *extra: str) -> tuple[list[str], int]:
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        command = pinned(
            args.core, python, "-m", "gateway", "serve", "--config", str(path),
            "--db", f"sqlite:///{tmp / name}.db", "--port", str(port), "--admin-port", str(free_port()),
            "--log-level", "warning", "--drain-s", "0", *extra,
        )  # fmt: skip
        return command, port

    bare_cmd, bare_port = gateway("bare", tollgate_config(upstream_url))
    redis = ("--redis", args.redis) if args.redis else ()
    policy_cmd, policy_port = gateway("policies", policy_config(upstream_url), *redis)
    with (
        process(upstream_cmd, upstream_url + "/v1/models", tmp / "upstream.log"),
        process(bare_cmd, f"http://127.0.0.1:{bare_port}/readyz", tmp / "bare.log") as bare,
        process(policy_cmd, f"http://127.0.0.1:{policy_port}/readyz", tmp / "policies.log") as policies,
    ):
        path = "/openai/gpt/v1/chat/completions"
        targets = [
            Target("bare", f"http://127.0.0.1:{bare_port}{path}", bare.pid),
            Target("policies", f"http://127.0.0.1:{policy_port}{path}", policies.pid),
        ]
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", flush=True)
            for target in targets:
                measure(target, script, args.load_core, args)
    result = {t.name: {k: statistics.median(r[k] for r in t.runs) for k in t.runs[0]} for t in targets}
    added = result["policies"]["p50_ms"] - result["bare"]["p50_ms"]
    cpu = result["policies"]["cpu_us_per_request"] - result["bare"]["cpu_us_per_request"]
    lines = [
        "| gateway | req/s @64 | p50 @1 | p99 @1 | CPU/req | RSS | errors |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {n} | {r['rps']:,.0f} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms "
            f"| {r['cpu_us_per_request']:.0f} µs | {r['rss_mib']:.0f} MiB | {r['errors']:.0f} |"
            for n, r in result.items()
        ),
        "",
        f"policies add {added:.3f} ms p50 and {cpu:.0f} µs CPU per request over bare (target: < 0.3 ms)",
    ]
    table = "\n".join(lines)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    report = {
        "date": stamp,
        "result": result,
        "added_p50_ms": added,
        "runs": {t.name: t.runs for t in targets},
    }
    (args.out / "chain.json").write_text(json.dumps(report, indent=2))
    (args.out / "chain.md").write_text(f"{stamp}\n\n{table}\n")


if __name__ == "__main__":
    main()
