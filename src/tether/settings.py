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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TETHER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        secrets_dir=None,
    )

    #: Where the store lives: sqlite:///path/to/tether.db (postgresql:// later).
    store: str = Field(default_factory=default_store_url)
    #: Tenant the CLI uses when none is given. The store API itself never defaults one.
    default_tenant: str = "default"
    #: Principals the CLI acts as; "*" sees only chunks public within the tenant.
    principals: list[str] = Field(default_factory=lambda: ["*"])

    #: Answer model: "extractive" (offline, no LLM), "openai-compat:http://host:port/v1#model",
    #: "openai:<model>" or "local:/path/model.gguf".
    model: str = "extractive"
    #: Per-feature pins: `[features.ask] model = "..."  prompt = "qa.answer@1"`.
    features: dict[str, FeatureConfig] = Field(default_factory=dict)
    #: Bearer key for openai: and openai-compat: models (env / .env only; OPENAI_API_KEY works).
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("tether_openai_api_key", "openai_api_key")
    )
    #: x-api-key for anthropic: models (env / .env only; ANTHROPIC_API_KEY works).
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("tether_anthropic_api_key", "anthropic_api_key"),
    )

    #: Response cache for model calls (SQLite) and its TTL; 0 seconds turns it off.
    response_cache: str = Field(
        default_factory=lambda: str(
            Path(user_cache_dir("tether", appauthor=False)) / "responses.db"
        )
    )
    response_cache_ttl: float = Field(default=0.0, ge=0)
    #: The usage ledger (one row per model call) that budgets and `tether usage` read.
    usage_db: str = Field(
        default_factory=lambda: str(Path(user_data_dir("tether", appauthor=False)) / "usage.db")
    )
    #: The embedded span store `tether traces` reads; "off" keeps no local traces.
    traces_db: str = Field(
        default_factory=lambda: str(Path(user_data_dir("tether", appauthor=False)) / "traces.db")
    )
    #: OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:6006/v1/traces); unset = no export.
    otlp_endpoint: str | None = None
    #: Record the question, prompts and replies (redacted, cut to 16k characters) on spans.
    #: Off by default: retrieved document text is in the prompt, and by default spans
    #: carry only ids and sizes. `tether traces export` needs it on.
    trace_content: bool = False
    #: Layered budgets for model calls (unset = no limit). Checked before every call.
    budget_request_tokens: int | None = Field(default=None, ge=1)
    budget_user_day_usd: float | None = Field(default=None, ge=0)
    budget_feature_day_usd: float | None = Field(default=None, ge=0)
    budget_tenant_month_usd: float | None = Field(default=None, ge=0)

    #: "minilm" (embedded) or "openai-compat:http://host:port/v1#model" (needs embeddings_dim).
    embedder: str = "minilm"
    embeddings_dim: int | None = Field(default=None, ge=1)
    #: Key for a remote embeddings endpoint, if one is configured (env / .env only).
    embeddings_api_key: SecretStr | None = None
    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    embed_max_tokens: int = Field(default=256, ge=16, le=512)
    embed_threads: int = Field(default=0, ge=0)
    #: SQLite file caching document embeddings by hash(model, text); "off" disables it.
    embed_cache: str = Field(
        default_factory=lambda: str(
            Path(user_cache_dir("tether", appauthor=False)) / "embeddings.db"
        )
    )

    #: `tether serve`: API keys (hashed), persisted streamed answers, and the models the
    #: OpenAI-compatible gateway passes through, by the name clients send, e.g.
    #: `[gateway_models] "gpt-4.1-mini" = "openai:gpt-4.1-mini"`. `tether-rag` is built in.
    keys_db: str = Field(
        default_factory=lambda: str(Path(user_data_dir("tether", appauthor=False)) / "keys.db")
    )
    answers_db: str = Field(
        default_factory=lambda: str(Path(user_data_dir("tether", appauthor=False)) / "answers.db")
    )
    #: The scanned bytes of uploaded documents, kept so they can be reindexed.
    uploads_db: str = Field(
        default_factory=lambda: str(Path(user_data_dir("tether", appauthor=False)) / "uploads.db")
    )
    gateway_models: dict[str, str] = Field(default_factory=dict)
    #: Rate limit a new key gets unless `tether keys create --rps` says otherwise.
    key_rps: float = Field(default=10.0, ge=0)
    key_burst: int = Field(default=20, ge=1)
    #: Largest JSON request body, and largest upload.
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    #: Seconds a parser subprocess may run on one upload, and its address-space limit.
    parse_seconds: float = Field(default=30.0, gt=0)
    parse_memory_mb: int = Field(default=1024, ge=64)

    #: Agents (`/v1/runs`, `tether runs`): runs, tool calls, the audit log and the tasks
    #: table live in one SQLite file. `agent_model` is a model spec with tool calling
    #: (empty: agents are off). Bounds apply per run; `agent_tools` is the allowlist of
    #: the `agent` route; `agent_secrets` are strings the output guard never lets out.
    agent_db: str = Field(
        default_factory=lambda: str(Path(user_data_dir("tether", appauthor=False)) / "agent.db")
    )
    agent_model: str = ""
    agent_max_steps: int = Field(default=8, ge=1, le=100)
    agent_max_cost_usd: float = Field(default=0.10, ge=0)
    agent_timeout_s: float = Field(default=120.0, gt=0)
    agent_tools: list[str] = Field(
        default_factory=lambda: ["search_docs", "create_task", "get_task"]
    )
    #: Narrower allowlists per tenant, e.g. `[agent_tenant_tools] globex = ["search_docs"]`.
    agent_tenant_tools: dict[str, list[str]] = Field(default_factory=dict)
    #: Whether `create_task` always needs approval (it does anyway once untrusted text
    #: is in the run's context).
    agent_task_approval: bool = True
    agent_secrets: list[SecretStr] = Field(default_factory=list)

    #: Conversations, summaries and facts with provenance (`tether.memory`).
    memory_db: str = Field(
        default_factory=lambda: str(Path(user_data_dir("tether", appauthor=False)) / "memory.db")
    )

    max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    #: With the extractive answerer, embed each chunk's candidate sentences at ingest (into
    #: the embedding cache): ingest takes about twice as long, and a question's first
    #: answer then costs one query embedding instead of ~60 sentence embeddings.
    prepare_answers: bool = True
    chunk_max_chars: int = Field(default=1200, ge=200)
    chunk_overlap_chars: int = Field(default=150, ge=0)

    top_k: int = Field(default=8, ge=1, le=200)
    candidates: int = Field(default=100, ge=1, le=2000)
    #: "convex" (min-max normalised weighted sum) beat RRF on SciFact; see docs/benchmarks.md.
    fusion: Literal["rrf", "convex", "zconvex"] = "convex"
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=0.5, ge=0.0, le=1.0)

    context_tokens: int = Field(default=1500, ge=64)
    per_source_cap: int = Field(default=3, ge=1)
    max_question_chars: int = Field(default=2000, ge=1)
    decline_threshold: float = Field(default=0.35, ge=0.0, le=1.0)

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
