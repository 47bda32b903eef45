"""Settings: the precedence chain, secret refusal in config files, store scheme, SecretStr."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from tether.errors import ConfigError
from tether.settings import Settings, load_settings


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TETHER_* variables from the outer environment, a cwd without .env, and a
    TETHER_CONFIG pointing at a (not yet written) file in tmp_path."""
    for key in list(os.environ):
        if key.upper().startswith("TETHER_"):
            monkeypatch.delenv(key, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    config = tmp_path / "tether.toml"
    monkeypatch.setenv("TETHER_CONFIG", str(config))
    # Keep the defaults of path-valued settings out of the real user dirs' concerns.
    monkeypatch.setenv("TETHER_STORE", f"sqlite:///{tmp_path / 'default.db'}")
    return tmp_path


def _write_toml(base: Path, text: str) -> None:
    (base / "tether.toml").write_text(text, encoding="utf-8")


def _write_env(base: Path, text: str) -> None:
    (base / "cwd" / ".env").write_text(text, encoding="utf-8")


def test_defaults_apply_when_nothing_is_configured(isolated: Path) -> None:
    settings = load_settings()
    assert settings.top_k == 8
    assert settings.fusion == "convex"
    assert settings.context_tokens == 1500
    assert settings.default_tenant == "default"
    assert settings.principals == ["*"]
    assert settings.embeddings_api_key is None


def test_precedence_defaults_toml_dotenv_env_flags(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_toml(
        isolated,
        "rrf_k = 10\ndense_weight = 0.1\ntop_k = 11\ncontext_tokens = 200\nfusion = 'rrf'\n",
    )
    _write_env(
        isolated,
        "TETHER_DENSE_WEIGHT=0.2\nTETHER_TOP_K=12\nTETHER_CONTEXT_TOKENS=300\n"
        "TETHER_FUSION=zconvex\n",
    )
    monkeypatch.setenv("TETHER_TOP_K", "13")
    monkeypatch.setenv("TETHER_CONTEXT_TOKENS", "400")

    settings = load_settings(context_tokens=500, top_k=None)

    assert settings.candidates == 100  # default: nobody set it
    assert settings.rrf_k == 10  # TOML beats the default
    assert settings.dense_weight == pytest.approx(0.2)  # .env beats TOML
    assert settings.fusion == "zconvex"  # .env beats TOML
    assert settings.top_k == 13  # env beats .env (a None flag overrides nothing)
    assert settings.context_tokens == 500  # flag beats env


def test_each_layer_alone_overrides_the_default(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_toml(isolated, "top_k = 21\n")
    assert load_settings().top_k == 21
    _write_env(isolated, "TETHER_TOP_K=22\n")
    assert load_settings().top_k == 22
    monkeypatch.setenv("TETHER_TOP_K", "23")
    assert load_settings().top_k == 23
    assert load_settings(top_k=24).top_k == 24


def test_missing_config_file_is_fine(isolated: Path) -> None:
    assert not (isolated / "tether.toml").exists()
    assert load_settings().top_k == 8


@pytest.mark.parametrize(
    "toml",
    [
        'api_key = "sk-SUPERSECRET"\n',
        '[openai]\ntoken = "sk-SUPERSECRET"\n',
        'db_password = "sk-SUPERSECRET"\n',
        'embeddings_api_key = "sk-SUPERSECRET"\n',
    ],
)
def test_config_file_with_a_secret_is_refused(isolated: Path, toml: str) -> None:
    _write_toml(isolated, toml)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "tether.toml" in message
    # The error names the key, never the secret itself.
    assert "sk-SUPERSECRET" not in message


def test_nested_secret_is_named_by_its_dotted_path(isolated: Path) -> None:
    _write_toml(isolated, '[openai]\ntoken = "x"\n')
    with pytest.raises(ConfigError, match=r"openai\.token"):
        load_settings()


@pytest.mark.parametrize(
    "toml", ["context_tokens = 100\n", "max_tokens = 5\n", "embed_max_tokens = 64\n"]
)
def test_token_counts_are_not_mistaken_for_secrets(isolated: Path, toml: str) -> None:
    _write_toml(isolated, toml)
    settings = load_settings()
    if toml.startswith("context_tokens"):
        assert settings.context_tokens == 100
    if toml.startswith("embed_max_tokens"):
        assert settings.embed_max_tokens == 64


def test_unparseable_toml_is_a_config_error(isolated: Path) -> None:
    _write_toml(isolated, "top_k = = 3\n")
    with pytest.raises(ConfigError, match=r"tether\.toml"):
        load_settings()


def test_invalid_value_in_toml_is_a_config_error(isolated: Path) -> None:
    _write_toml(isolated, "top_k = 0\n")
    with pytest.raises(ConfigError):
        load_settings()


@pytest.mark.parametrize("url", ["mysql://db/x", "sqlite://relative.db", "/tmp/x.db", ""])
def test_invalid_store_scheme_from_env_is_a_config_error(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("TETHER_STORE", url)
    with pytest.raises(ConfigError, match="TETHER_STORE"):
        load_settings()


def test_invalid_store_scheme_from_flag_is_a_config_error(isolated: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(store="mysql://db/x")


@pytest.mark.parametrize("url", ["sqlite:////tmp/x.db", "postgresql://h/db", "postgres://h/db"])
def test_known_store_schemes_are_accepted(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("TETHER_STORE", url)
    assert load_settings().store == url


def test_invalid_enum_from_env_is_a_config_error(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_FUSION", "max")
    with pytest.raises(ConfigError):
        load_settings()


def test_api_key_from_env_is_a_secret_that_repr_hides(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("TETHER_EMBEDDINGS_API_KEY", secret)
    settings = load_settings()
    assert isinstance(settings.embeddings_api_key, SecretStr)
    assert settings.embeddings_api_key.get_secret_value() == secret
    assert secret not in repr(settings)
    assert secret not in str(settings)
    assert secret not in settings.model_dump_json()


def test_api_key_from_dotenv_is_allowed_and_hidden(isolated: Path) -> None:
    secret = "sk-dotenv-abcdef0123456789"
    _write_env(isolated, f"TETHER_EMBEDDINGS_API_KEY={secret}\n")
    settings = load_settings()
    assert isinstance(settings.embeddings_api_key, SecretStr)
    assert settings.embeddings_api_key.get_secret_value() == secret
    assert secret not in repr(settings)


def test_principals_parse_from_json_env(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_PRINCIPALS", '["alice", "group:eng"]')
    assert load_settings().principals == ["alice", "group:eng"]


def test_settings_class_direct_construction_respects_env(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_DEFAULT_TENANT", "acme")
    assert Settings().default_tenant == "acme"


def test_secrets_can_come_from_a_secrets_folder(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = isolated / "secrets"
    folder.mkdir()
    (folder / "openai_api_key").write_text("sk-from-a-mounted-file")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("TETHER_SECRETS_DIR", str(folder))
    settings = load_settings()
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-from-a-mounted-file"
    assert "sk-from-a-mounted-file" not in repr(settings)
    monkeypatch.setenv("TETHER_SECRETS_DIR", str(isolated / "missing"))
    with pytest.raises(ConfigError, match="not a folder"):
        load_settings()


def test_feature_pins_from_the_config_file_and_their_precedence(isolated: Path) -> None:
    from tether.settings import feature_model, feature_prompt

    _write_toml(
        isolated,
        'model = "extractive"\n[features.ask]\nmodel = "fake"\nprompt = "qa.answer@1"\n',
    )
    settings = load_settings()
    assert feature_model(settings, "ask") == "fake"
    assert feature_model(settings, "ask", "openai:gpt-4.1-mini") == "openai:gpt-4.1-mini"
    assert feature_model(settings, "other") == "extractive"
    assert feature_prompt(settings, "ask", "qa.answer") == 1
    assert feature_prompt(settings, "other", "qa.answer") is None
    with pytest.raises(ConfigError, match=r"pins 'qa\.answer'"):
        feature_prompt(settings, "ask", "qa.summary")


def test_a_malformed_prompt_pin_is_a_config_error(isolated: Path) -> None:
    _write_toml(isolated, '[features.ask]\nprompt = "qa.answer-latest"\n')
    with pytest.raises(ConfigError, match="id@version"):
        load_settings()


def test_hardening_17_configuration_reference_is_generated_from_settings() -> None:
    """Finding 17: docs/configuration.md missed many settings. Its table is generated from
    the Settings model, and this fails when the two disagree."""
    from tether.settings import Settings
    from tether.settings_doc import DOC, render

    current = DOC.read_text(encoding="utf-8")
    assert render(current) == current, "run: python -m tether.settings_doc"
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"
        assert f"`TETHER_{name.upper()}`" in current
