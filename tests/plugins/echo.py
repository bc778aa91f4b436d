"""A test plugin (sync handler) that rewrites every body into what it was told: its call, whole."""

from pipeline.plugins.sdk import serve
from pipeline.sdk import FilterCall, Verdict


def echo(call: FilterCall) -> Verdict:
    return Verdict.rewrite(
        {
            "phase": call.phase,
            "filter": call.filter,
            "config": call.config,
            "body": call.body,
            "metadata": call.metadata,
        }
    )


if __name__ == "__main__":
    serve(echo)
