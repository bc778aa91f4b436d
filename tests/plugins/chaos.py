"""A test plugin (async handler) that misbehaves on request: the body's `say` decides.

crash: exits at once (mid-call); slow: sleeps `config.sleep_s`; block / rewrite: the verdicts; fail: raises;
anything else: passes.
"""

import asyncio
import os

from pipeline.plugins.sdk import serve
from pipeline.sdk import FilterCall, Verdict


async def chaos(call: FilterCall) -> Verdict | None:
    say = call.body.get("say") if isinstance(call.body, dict) else None
    if say == "crash":
        os._exit(3)
    if say == "slow":
        await asyncio.sleep(call.config.get("sleep_s", 2.0))
    if say == "block":
        return Verdict.block(f"{call.phase} said no")
    if say == "rewrite":
        return Verdict.rewrite({**call.body, "say": "rewritten", "phase": call.phase})
    if say == "fail":
        raise RuntimeError("the handler broke")
    return None


if __name__ == "__main__":
    serve(chaos)
