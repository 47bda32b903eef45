"""One Settings object. Precedence: defaults < configs/tether.toml < .env < TETHER_* env < flags.

Secrets (API keys, passwords, tokens) are read from the environment, `.env` or a secrets
directory only; a config file that holds one is rejected, because config files get
committed and secrets in git outlive every rotation.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_cache_dir, user_data_dir
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tether.errors import ConfigError
from tether.ledger import Limit

DEFAULT_CONFIG_FILE = Path("configs/tether.toml")
_SECRET_KEY = re.compile(
    r"(api[_-]?key|secret[_-]?key|private[_-]?key|access[_-]?key|(^|[_-])key|secret|password|"
    r"passwd|token|credentials?)$",
    re.I,
)


def default_store_url() -> str:
    return "sqlite:///" + str(Path(user_data_dir("tether", appauthor=False)) / "tether.db")


def config_file() -> Path:
    return Path(os.environ.get("TETHER_CONFIG", str(DEFAULT_CONFIG_FILE)))


def _secret_paths(data: Any, prefix: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            if _SECRET_KEY.search(str(key)):
                found.append(path)
            found.extend(_secret_paths(value, path + "."))
    return found


class _CheckedTomlSource(TomlConfigSettingsSource):
    """TOML source that refuses files containing secret-looking keys."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file {path}: {exc}") from exc
            bad = _secret_paths(data)
            if bad:
                raise ConfigError(
                    f"{path} holds secret-looking keys ({', '.join(bad)}); put secrets in "
                    "the environment or .env, never in a config file"
                )
        super().__init__(settings_cls, toml_file=path)


class FeatureConfig(BaseModel):
    """What one feature (e.g. `ask`) runs: pinned so a switch, and a rollback, is a config
    change that `tether eval compare` can vet first."""

    model_config = ConfigDict(extra="forbid")

    #: Model spec for this feature; unset = the top-level `model`.
    model: str | None = None
    #: Prompt pin "id@version", e.g. "qa.answer@1"; unset = the latest registered version.
    prompt: str | None = None

    @field_validator("prompt")
    @classmethod
    def _pin_format(cls, value: str | None) -> str | None:
        if value is not None:
            prompt_id, _, version = value.partition("@")
            if not prompt_id or not version.isdigit():
                raise ValueError("a prompt pin is 'id@version', e.g. qa.answer@1")
        return value


def _data_file(name: str) -> str:
    return str(Path(user_data_dir("tether", appauthor=False)) / name)


def _cache_file(name: str) -> str:
    return str(Path(user_cache_dir("tether", appauthor=False)) / name)


class ModelPrice(BaseModel):
    """USD per million tokens for a model the bundled price table does not know (a
    self-hosted model is usually 0)."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


class Settings(BaseSettings):
    """Every setting, with its description: `docs/configuration.md` is generated from
    this class (`python -m tether.settings_doc`), so the reference cannot drift."""

    model_config = SettingsConfigDict(
        env_prefix="TETHER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        secrets_dir=None,
    )

    # -- store and tenancy
    store: str = Field(
        default_factory=default_store_url,
        description="Where documents, chunks, vectors and the keyword index live: "
        "`sqlite:///path/tether.db`, or `postgresql://user@host/db` for PostgreSQL + "
        "pgvector (`tether db upgrade`, `tether migrate --from … --to …`).",
    )
    default_tenant: str = Field(
        default="default",
        description="Tenant the CLI uses when `--tenant` is not given. The store API "
        "itself never defaults one.",
    )
    principals: list[str] = Field(
        default_factory=lambda: ["*"],
        description='Principals the CLI acts as; `"*"` sees only chunks public within the tenant.',
    )

    # -- models
    model: str = Field(
        default="extractive",
        description="Answer model: `extractive` (offline, no LLM), `openai:<model>`, "
        "`anthropic:<model>`, `openai-compat:http://host:port/v1#<model>`, "
        "`local:/path/model.gguf` or `fake` (see docs/models.md).",
    )
    features: dict[str, FeatureConfig] = Field(
        default_factory=dict,
        description="Per-feature pins in the config file: `[features.ask] model = "
        '"openai:gpt-4.1-mini"`, `prompt = "qa.answer@1"`. A flag beats a pin, a pin '
        "beats `model`.",
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("tether_openai_api_key", "openai_api_key"),
        description="Bearer key for `openai:` and `openai-compat:` models (environment, "
        "`.env` or `TETHER_SECRETS_DIR` only; `OPENAI_API_KEY` works too).",
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("tether_anthropic_api_key", "anthropic_api_key"),
        description="`x-api-key` for `anthropic:` models (environment, `.env` or "
        "`TETHER_SECRETS_DIR` only; `ANTHROPIC_API_KEY` works too).",
    )
    model_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Seconds to open a connection to a model provider."
    )
    model_read_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a model provider may stay silent mid-response before the "
        "call fails with a timeout (raise it for slow self-hosted models).",
    )
    model_first_token_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a streamed call may wait for the model's first output.",
    )
    model_deadline_s: float = Field(
        default=120.0,
        gt=0,
        description="Total seconds one non-streamed model call may take, retries "
        "included; an upstream that drips bytes cannot hold a request past it.",
    )
    model_max_response_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Largest decoded upstream response a model call may read (a "
        "compressed body counts as inflated); a larger one fails with a typed 502.",
    )
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Prices for models the bundled table lacks, by model name, e.g. "
        '`[model_prices."openai-compat:qwen"] input = 0  output = 0`; dollar budgets '
        "need a price (0 is a price) for every model they cover.",
    )

    # -- response cache, usage, budgets, traces
    response_cache: str = Field(
        default_factory=lambda: _cache_file("responses.db"),
        description="SQLite file of the model response cache.",
    )
    response_cache_ttl: float = Field(
        default=0.0,
        ge=0,
        description="Seconds a model response is reused; 0 turns the cache off. "
        "`tether cache clear` empties it.",
    )
    usage_db: str = Field(
        default_factory=lambda: _data_file("usage.db"),
        description="The usage ledger (one row per model call) that budgets and "
        "`tether usage` read.",
    )
    traces_db: str = Field(
        default_factory=lambda: _data_file("traces.db"),
        description="The embedded span store `tether traces` reads; `off` keeps no local traces.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:6006/v1/traces`; "
        "unset = no export. Spans are redacted before export.",
    )
    trace_content: bool = Field(
        default=False,
        description="Also record the question, prompts and replies (redacted, cut at "
        "16k characters) on spans. Off, spans carry ids and sizes only (retrieved "
        "document text is in the prompt). `tether traces export` needs it on.",
    )
    user_id_key: SecretStr | None = Field(
        default=None,
        description="Key of the keyed hash (HMAC-SHA256) that identifies end users in "
        "traces and the usage ledger (`user` of a chat completion), so no raw user "
        "string is stored. Unset: a random key is made once and kept in `keys_db`. "
        "Environment, `.env` or `TETHER_SECRETS_DIR` only.",
    )
    budget_request_tokens: int | None = Field(
        default=None, ge=1, description="Most tokens one model call may use (unset: no limit)."
    )
    budget_user_day_usd: float | None = Field(
        default=None, ge=0, description="Dollars one user may spend per UTC day."
    )
    budget_feature_day_usd: float | None = Field(
        default=None, ge=0, description="Dollars one feature may spend per UTC day."
    )
    budget_tenant_month_usd: float | None = Field(
        default=None, ge=0, description="Dollars one tenant may spend per calendar month."
    )

    # -- embeddings
    embedder: str = Field(
        default="minilm",
        description="`minilm` (embedded ONNX model), or "
        "`openai-compat:http://host:port/v1#model` with `embeddings_dim`.",
    )
    embeddings_dim: int | None = Field(
        default=None, ge=1, description="Dimension of a remote embedder's vectors."
    )
    embeddings_api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key for a remote embeddings endpoint (environment, `.env` or "
        "`TETHER_SECRETS_DIR` only).",
    )
    embed_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Texts per embedding batch."
    )
    embed_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Batches a remote embedder sends at once (each retried like a chat "
        "call on 429, 5xx and transport errors).",
    )
    embed_max_tokens: int = Field(
        default=256, ge=16, le=512, description="Tokens MiniLM reads per text (longer is cut)."
    )
    embed_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime threads for MiniLM; 0 = one per core."
    )
    embed_cache: str = Field(
        default_factory=lambda: _cache_file("embeddings.db"),
        description="SQLite file caching document embeddings by hash(model, text); "
        "`off` disables it.",
    )

    # -- tether serve
    keys_db: str = Field(
        default_factory=lambda: _data_file("keys.db"),
        description="API keys (hashed) for `tether serve`.",
    )
    answers_db: str = Field(
        default_factory=lambda: _data_file("answers.db"),
        description="Answers the service produced, by request id, for `GET /v1/answers/{id}`.",
    )
    uploads_db: str = Field(
        default_factory=lambda: _data_file("uploads.db"),
        description="The scanned bytes of uploaded documents, kept so they can be reindexed.",
    )
    gateway_models: dict[str, str] = Field(
        default_factory=dict,
        description="Models the OpenAI-compatible gateway passes through, by the name "
        'clients send: `[gateway_models] "gpt-4.1-mini" = "openai:gpt-4.1-mini"`. '
        "`tether-rag` is built in.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a Prometheus scraper sends to `GET /metrics`, which is "
        "service-wide and so is not open to any tenant's key. Unset: `/metrics` answers "
        "404. Environment, `.env` or `TETHER_SECRETS_DIR` only.",
    )
    key_rps: float = Field(
        default=10.0,
        ge=0,
        description="Requests per second a new key gets unless `tether keys create "
        "--rps` says otherwise (0 = unlimited).",
    )
    key_burst: int = Field(default=20, ge=1, description="Burst a new key gets above its rate.")
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest JSON request body, in bytes."
    )
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="Largest upload, in bytes."
    )
    max_upload_chunks: int = Field(
        default=2000,
        ge=1,
        description="Most chunks one upload may become; a document that parses into more "
        "is refused with 413 before anything is embedded.",
    )
    upload_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Seconds one upload or reindex may spend parsing and embedding; past "
        "it the request fails with 413 and nothing is written.",
    )
    parse_seconds: float = Field(
        default=30.0, gt=0, description="Seconds a parser subprocess may run on one upload."
    )
    parse_memory_mb: int = Field(
        default=1024, ge=64, description="Address-space limit of a parser subprocess, in MB."
    )

    # -- agents
    agent_db: str = Field(
        default_factory=lambda: _data_file("agent.db"),
        description="Agent runs, tool calls, the audit log and the tasks table.",
    )
    agent_model: str = Field(
        default="",
        description="Model spec with tool calling for `/v1/runs` and `tether runs`; empty: "
        "agents are off.",
    )
    agent_max_steps: int = Field(default=8, ge=1, le=100, description="Most steps per run.")
    agent_max_cost_usd: float = Field(
        default=0.10, ge=0, description="Most dollars one run may spend."
    )
    agent_timeout_s: float = Field(default=120.0, gt=0, description="Seconds one run may take.")
    agent_tools: list[str] = Field(
        default_factory=lambda: ["search_docs", "create_task", "get_task"],
        description="The allowlist of tools the `agent` route may call.",
    )
    agent_tenant_tools: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Narrower allowlists per tenant, e.g. `[agent_tenant_tools] globex = "
        '["search_docs"]`.',
    )
    agent_task_approval: bool = Field(
        default=True,
        description="Whether `create_task` always needs approval (it does anyway once "
        "untrusted text is in the run's context).",
    )
    agent_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Strings the output guard never lets out of a run (environment or "
        "`.env` only).",
    )

    # -- memory
    memory_db: str = Field(
        default_factory=lambda: _data_file("memory.db"),
        description="Facts with provenance and forget (`tether memory`, `tether.memory`).",
    )

    # -- ingest
    max_file_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1,
        description="`tether ingest` reports larger files as failed instead of ingesting them.",
    )
    prepare_answers: bool = Field(
        default=True,
        description="With the extractive answerer, embed each chunk's candidate sentences "
        "at ingest (into the embedding cache): ingest takes about twice as long, and a "
        "question's first answer costs one query embedding instead of ~60.",
    )
    chunk_max_chars: int = Field(default=1200, ge=200, description="Largest chunk, in characters.")
    chunk_overlap_chars: int = Field(
        default=150, ge=0, description="Characters adjacent chunks share."
    )

    # -- retrieval and answers
    top_k: int = Field(default=8, ge=1, le=200, description="Chunks retrieved per question.")
    candidates: int = Field(
        default=100, ge=1, le=2000, description="Candidates each retriever returns before fusion."
    )
    fusion: Literal["rrf", "convex", "zconvex"] = Field(
        default="convex",
        description="`convex` (min-max normalised weighted sum; it beat RRF on SciFact, "
        "see docs/benchmarks.md), `zconvex` or `rrf`.",
    )
    rrf_k: int = Field(default=60, ge=1, description="The k of reciprocal rank fusion.")
    dense_weight: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Weight of the dense side in the fused score."
    )
    context_tokens: int = Field(
        default=1500, ge=64, description="Token budget of the packed context."
    )
    per_source_cap: int = Field(
        default=3, ge=1, description="Most chunks of one source in the packed context."
    )
    max_question_chars: int = Field(
        default=2000,
        ge=1,
        description="Longer questions are refused with `InvalidQuestion` (400 over HTTP).",
    )
    decline_threshold: float = Field(
        default=0.35,
        ge=0.0,
        le=1.0,
        description="Evidence score under which the extractive answer is a decline.",
    )

    @field_validator("store")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("TETHER_STORE must start with sqlite:/// or postgresql://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _CheckedTomlSource(settings_cls, config_file())
        return (init_settings, env_settings, dotenv_settings, file_secret_settings, toml)


def feature_model(settings: Settings, feature: str, flag: str | None = None) -> str:
    """The model a feature runs: a command-line flag, else its pin, else `model`."""
    pinned = settings.features.get(feature)
    return flag or (pinned.model if pinned and pinned.model else settings.model)


def feature_prompt(settings: Settings, feature: str, prompt_id: str) -> int | None:
    """The pinned version of `prompt_id` for a feature (None: the latest)."""
    pinned = settings.features.get(feature)
    if pinned is None or pinned.prompt is None:
        return None
    pin_id, _, version = pinned.prompt.partition("@")
    if pin_id != prompt_id:
        raise ConfigError(
            f"features.{feature}.prompt pins {pin_id!r}; this feature uses {prompt_id!r}"
        )
    return int(version)


def model_api_key(settings: Settings, model: str | None = None) -> str | None:
    """The key for the model's provider (default: the configured model), from env / .env only."""
    spec = model or settings.model
    secret = (
        settings.anthropic_api_key if spec.startswith("anthropic:") else settings.openai_api_key
    )
    return secret.get_secret_value() if secret else None


def prepares_answers(settings: Settings) -> bool:
    """Whether ingest should embed the extractive answerer's sentences (see the field)."""
    extractive = feature_model(settings, "ask").strip() in ("", "extractive")
    return settings.prepare_answers and extractive and settings.embed_cache.lower() != "off"


def budget_limits(settings: Settings) -> list[Limit]:
    limits = [
        Limit("request", tokens=settings.budget_request_tokens),
        Limit("user_day", usd=settings.budget_user_day_usd),
        Limit("feature_day", usd=settings.budget_feature_day_usd),
        Limit("tenant_month", usd=settings.budget_tenant_month_usd),
    ]
    return [limit for limit in limits if limit.tokens is not None or limit.usd is not None]


def load_settings(**overrides: Any) -> Settings:
    """Settings with CLI flags (non-None overrides) on top of everything else. Secrets may
    also come from files in TETHER_SECRETS_DIR (one file per setting, e.g.
    `openai_api_key`), as container orchestrators mount them."""
    values = {k: v for k, v in overrides.items() if v is not None}
    secrets_dir = os.environ.get("TETHER_SECRETS_DIR")
    if secrets_dir:
        if not Path(secrets_dir).is_dir():
            raise ConfigError(f"TETHER_SECRETS_DIR {secrets_dir} is not a folder")
        values["_secrets_dir"] = secrets_dir
    try:
        return Settings(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
