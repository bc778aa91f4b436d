"""The YAML bootstrap: the whole INTERFACE.md format loads, and every mistake is one line naming
the file, the entry and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.loader import ConfigError, load_config

FULL = """
secrets:
  OPENAI_KEY: ${OPENAI_API_KEY}
llms:
  - slug: gpt
    vendor: openai
    api_base: https://api.openai.com/v1
    api_key: $SECRET/OPENAI_KEY
    allowed_models: ["gpt-4o.*"]
    default_model: gpt-4o-mini
    monthly_budget_usd: 500
    filters: [pii]
    namespace: ""
    timeout_s: 600
  - {slug: claude, vendor: anthropic, api_key: k, anthropic_version: "2023-06-01"}
  - {slug: gemini, vendor: google_ai, api_key: k}
  - {slug: vx, vendor: vertex, api_key: "{}", project: p, region: europe-west4}
  - {slug: az, vendor: azure_openai, api_base: "https://n.openai.azure.com", api_key: k,
     api_version: "2024-10-21", deployments: {gpt-4o: prod-4o}}
  - {slug: br, vendor: bedrock, api_key: "AKIA:secret", region: eu-west-1}
  - {slug: mi, vendor: mistral, api_key: k}
  - {slug: hf, vendor: huggingface, api_key: k}
  - {slug: ol, vendor: ollama}
routes:
  - slug: smart
    strategy: weighted
    targets:
      - {llm: gpt, model: gpt-4o, weight: 3}
      - {llm: claude, priority: 1}
    retry: {attempts: 2, on: [429, 500, 502, 503, 504, timeout, connect], backoff_ms: 200,
            respect_retry_after: true, max_retry_after_s: 30}
    fallback: {on: [context_length, content_filter], to: gpt}
    cooldown: {fails: 3, window_s: 60, duration_s: 30}
    cache: {mode: exact, ttl_s: 3600}
cache:
  backend: memory
  max_entries: 10000
  embedding: {llm: gpt, model: text-embedding-3-small}
prices:
  - {vendor: openai, model: gpt-4o-mini, input_per_1m: 0.15, output_per_1m: 0.60,
     cache_write_per_1m: 0.0, cache_read_per_1m: 0.075}
users:
  - {email: alice@example.com, role: developer, groups: [ml-team]}
groups:
  - {name: ml-team, llms: [gpt, smart]}
apps:
  - name: support-bot
    owner: alice@example.com
    api_key: tg-demo-0001
    llms: [gpt]
    monthly_budget_usd: 20
    rate_limit: {rpm: 600, tpm: 200000}
    cache: {mode: semantic, threshold: 0.9, scope: app}
filters:
  - name: pii
    phase: post_auth
    kind: pii_redact
    config: {entities: [email, phone, credit_card]}
    global: false
  - {name: plug, phase: pre_auth, kind: "plugin:/usr/bin/true"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tollgate.yaml"
    path.write_text(text)
    return path


def test_the_whole_interface_format_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL), {"OPENAI_API_KEY": "sk-live"})
    assert cfg.secrets == {"OPENAI_KEY": "sk-live"}
    assert [llm.slug for llm in cfg.llms] == ["gpt", "claude", "gemini", "vx", "az", "br", "mi", "hf", "ol"]
    assert cfg.routes[0].retry is not None and cfg.routes[0].retry.on[-1] == "connect"
    assert cfg.filters[0].global_ is False and cfg.apps[0].rate_limit is not None
    assert cfg.filters[1].namespace == "" and cfg.llms[1].namespace == ""


def test_the_example_config_loads() -> None:
    cfg = load_config(Path(__file__).parents[2] / "examples" / "tollgate.yaml", {})
    assert cfg.apps[0].api_key == "tg-demo-0001" and cfg.apps[0].llms == [cfg.llms[0].slug]


def _with(change: str) -> str:
    """The FULL config with one line replaced (`old => new`)."""
    old, new = change.split(" => ")
    assert old in FULL
    return FULL.replace(old, new, 1)


ERRORS = [
    (
        "bad vendor",
        _with("vendor: openai\n => vendor: openia\n"),
        "llms 'gpt': field 'vendor': Invalid enum value 'openia'",
    ),
    (
        "unknown field",
        _with("timeout_s: 600 => timeot_s: 600"),
        "llms 'gpt': field 'timeot_s': unknown field",
    ),
    (
        "bad type",
        _with("monthly_budget_usd: 500 => monthly_budget_usd: lots"),
        "llms 'gpt': field 'monthly_budget_usd'",
    ),
    (
        "negative",
        _with("monthly_budget_usd: 20 => monthly_budget_usd: -1"),
        "apps 'support-bot': field 'monthly_budget_usd'",
    ),
    (
        "bad regex",
        _with('allowed_models: ["gpt-4o.*"] => allowed_models: ["gpt-(4o"]'),
        "llms 'gpt': field 'allowed_models': invalid regex",
    ),
    (
        "default not allowed",
        _with("default_model: gpt-4o-mini => default_model: o1"),
        "llms 'gpt': field 'default_model'",
    ),
    (
        "unknown secret",
        _with("$SECRET/OPENAI_KEY => $SECRET/NOPE"),
        "llms 'gpt': field 'api_key': unknown secret 'NOPE'",
    ),
    (
        "unknown owner",
        _with("owner: alice@example.com => owner: bob@example.com"),
        "apps 'support-bot': field 'owner': unknown user",
    ),
    (
        "unknown llm",
        _with("llms: [gpt]\n    monthly => llms: [gtp]\n    monthly"),
        "apps 'support-bot': field 'llms': unknown LLM or route 'gtp'",
    ),
    (
        "unknown group",
        _with("groups: [ml-team] => groups: [nobody]"),
        "users 'alice@example.com': field 'groups': unknown group",
    ),
    (
        "unknown filter",
        _with("filters: [pii] => filters: [pi]"),
        "llms 'gpt': field 'filters': unknown filter 'pi'",
    ),
    (
        "bad filter kind",
        _with("kind: pii_redact => kind: pii"),
        "filters 'pii': field 'kind': unknown kind 'pii'",
    ),
    (
        "bad filter phase",
        _with("phase: post_auth\n    kind: pii => phase: pre_auth\n    kind: pii"),
        "filters 'pii': field 'phase'",
    ),
    (
        "vendor field",
        _with('anthropic_version: "2023-06-01" => organization: o'),
        "llms 'claude': field 'organization': does not apply",
    ),
    ("azure needs base", _with('api_base: "https://n.openai.azure.com", => '), "llms 'az': field 'api_base'"),
    ("duplicate slug", _with("slug: gemini => slug: gpt"), "llms 'gpt': defined more than once"),
    ("bad slug", _with("slug: gemini => slug: gem/ini"), "llms 'gem/ini': field 'slug'"),
    (
        "route target",
        _with("{llm: claude, priority: 1} => {llm: nope}"),
        "routes 'smart': field 'targets': unknown LLM 'nope'",
    ),
    ("retry status", _with("on: [429, 500 => on: [99, 500"), "routes 'smart': field 'retry.on[0]'"),
    (
        "missing field",
        _with("    vendor: openai\n    api_base => #\n    api_base"),
        "llms 'gpt': field 'vendor': is required",
    ),
    ("unknown section", FULL + "\nlimits: {}\n", "field 'limits': unknown field"),
]


@pytest.mark.parametrize(("text", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_mistakes_name_file_entry_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path, {"OPENAI_API_KEY": "k"})
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "\n" not in message


def test_unset_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"field 'secrets.OPENAI_KEY': environment variable OPENAI_API_KEY is not set"
    ):
        load_config(write(tmp_path, FULL), {})


def test_environment_default_and_escape(tmp_path: Path) -> None:
    text = "secrets: {A: '${NOPE:-fallback}', B: '$${LITERAL}'}\n"
    assert load_config(write(tmp_path, text), {}).secrets == {"A": "fallback", "B": "${LITERAL}"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("llms: [\n", "invalid YAML at line"), ("- a\n- b\n", "top level must be a mapping")],
    ids=["broken yaml", "not a mapping"],
)
def test_not_a_config_at_all(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text), {})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml", {})


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), {}).llms == []
