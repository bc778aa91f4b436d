"""Schema migrations, in code, one list per dialect (the same steps, the same numbering). Each step runs
once, in order, inside the migrating transaction."""

from __future__ import annotations

from store.base import KIND_NAMES


def _entity_table(kind: str) -> str:
    return f"""
        CREATE TABLE {kind} (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            name        TEXT NOT NULL UNIQUE,
            namespace   TEXT NOT NULL DEFAULT '',
            data        BLOB NOT NULL,
            key_hash    TEXT UNIQUE,
            created_at  REAL NOT NULL,
            updated_at  REAL NOT NULL
        )"""


_ANALYTICS = """
    CREATE TABLE analytics (
        id                  INTEGER PRIMARY KEY AUTOINCREMENT,
        ts                  REAL NOT NULL,
        request_id          TEXT NOT NULL,
        interaction_type    TEXT NOT NULL,
        status_code         INTEGER NOT NULL,
        error_code          TEXT NOT NULL DEFAULT '',
        user_id             INTEGER,
        user_email          TEXT NOT NULL DEFAULT '',
        app_id              INTEGER,
        app_name            TEXT NOT NULL DEFAULT '',
        llm_id              INTEGER,
        llm_slug            TEXT NOT NULL DEFAULT '',
        vendor              TEXT NOT NULL DEFAULT '',
        model_name          TEXT NOT NULL DEFAULT '',
        prompt_tokens       INTEGER NOT NULL DEFAULT 0,
        response_tokens     INTEGER NOT NULL DEFAULT 0,
        total_tokens        INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens   INTEGER NOT NULL DEFAULT 0,
        cost                REAL NOT NULL DEFAULT 0,
        latency_ms          REAL NOT NULL DEFAULT 0,
        upstream_latency_ms REAL NOT NULL DEFAULT 0,
        stream              INTEGER NOT NULL DEFAULT 0,
        edge_id             TEXT NOT NULL DEFAULT '',
        route               TEXT NOT NULL DEFAULT '',
        attempt             INTEGER NOT NULL DEFAULT 1,
        cache_status        TEXT NOT NULL DEFAULT ''
    )"""

SQLITE: list[list[str]] = [
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('config_version', 0)",
        *(_entity_table(kind) for kind in KIND_NAMES),
        _ANALYTICS,
        "CREATE INDEX analytics_ts ON analytics (ts)",
        # Every index costs each insert; filters by user or LLM scan the time index (newest first).
        "CREATE INDEX analytics_app_ts ON analytics (app_id, ts)",
    ],
    ["ALTER TABLE analytics ADD COLUMN blocked_by TEXT NOT NULL DEFAULT ''"],
    [
        # State beside the config that never bumps its version: a hub's published snapshots and edge
        # registry, an edge's cached snapshot, looked-up keys and upload cursor.
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        # A hub's watermark per edge database: the highest analytics row id it has taken from it.
        "CREATE TABLE uploads (source TEXT PRIMARY KEY, last_id INTEGER NOT NULL)",
    ],
]


def _pg_entity_table(kind: str) -> str:
    return f"""
        CREATE TABLE {kind} (
            id          BIGSERIAL PRIMARY KEY,
            name        TEXT NOT NULL UNIQUE,
            namespace   TEXT NOT NULL DEFAULT '',
            data        BYTEA NOT NULL,
            key_hash    TEXT UNIQUE,
            created_at  DOUBLE PRECISION NOT NULL,
            updated_at  DOUBLE PRECISION NOT NULL
        )"""


# SQLite's analytics table in PostgreSQL's types (BIGSERIAL ids are never reused, as AUTOINCREMENT's).
_PG_ANALYTICS = (
    _ANALYTICS.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
    .replace(" REAL ", " DOUBLE PRECISION ")
    .replace("INTEGER", "BIGINT")
)

POSTGRES: list[list[str]] = [
    [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('config_version', 0)",
        *(_pg_entity_table(kind) for kind in KIND_NAMES),
        _PG_ANALYTICS,
        "CREATE INDEX analytics_ts ON analytics (ts)",
        "CREATE INDEX analytics_app_ts ON analytics (app_id, ts)",
    ],
    ["ALTER TABLE analytics ADD COLUMN blocked_by TEXT NOT NULL DEFAULT ''"],
    [
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value BYTEA NOT NULL)",
        "CREATE TABLE uploads (source TEXT PRIMARY KEY, last_id BIGINT NOT NULL)",
    ],
]
