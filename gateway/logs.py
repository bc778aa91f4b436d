"""Logging: one line per event on stderr. Secrets are never logged (keys are hashed before any use)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own start/stop chatter is replaced by ours ("gateway listening on ...")
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))
