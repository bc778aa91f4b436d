"""`python:` filters for tests/test_plugins.py: one sync, one async, one callable object, one not callable."""

from pipeline.sdk import FilterCall, Verdict

NOT_CALLABLE = 42


def no_secrets(call: FilterCall) -> Verdict | None:
    if "secret" in str(call.body):
        return Verdict.block("mentions a secret")
    return None


async def tag(call: FilterCall) -> Verdict | None:
    if call.config.get("tag") and isinstance(call.body, dict):
        return Verdict.rewrite({**call.body, "tag": call.config["tag"], "stream": call.metadata["stream"]})
    return None


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, call: FilterCall) -> Verdict | None:
        self.calls += 1
        return None


counter = Counter()


def wrong(call: FilterCall) -> object:
    return {"action": "block"}
