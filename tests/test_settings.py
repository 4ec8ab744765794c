"""Settings that are secrets, or may hold one (a password in a URL), never show it:
not in the settings' repr, str or JSON dump, and not in an error about them, which
names the setting and the rule (settings.py, SettingsError). What `roomcast serve`
prints with such settings: tests/e2e/test_peer_noise.py."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from roomcast.settings import Settings, SettingsError

PASSWORD = "pw" + secrets.token_hex(16)

SECRET_SETTINGS: dict[str, Any] = {
    "jwt_secret": PASSWORD,
    "api_keys": [PASSWORD],
    "redis_url": f"redis://app:{PASSWORD}@127.0.0.1:6379/0",
    "database_url": f"postgresql+asyncpg://app:{PASSWORD}@127.0.0.1:5432/roomcast",
    "jwt_jwks_url": f"https://keys.example/jwks.json?key={PASSWORD}",
    "redis_sentinel_password": PASSWORD,
}


def assert_no_part_of_the_secret(text: str) -> None:
    """Not the secret, nor any 6 characters of it in a row."""
    pieces = {PASSWORD[i : i + 6] for i in range(len(PASSWORD) - 5)}
    assert not [piece for piece in pieces if piece in text], text


@pytest.mark.parametrize("name", sorted(SECRET_SETTINGS))
def test_a_secret_setting_is_never_shown_by_the_settings(name: str) -> None:
    settings = Settings(**{name: SECRET_SETTINGS[name]})
    value = getattr(settings, name)
    assert not isinstance(value, str)  # a reader has to ask for it (get_secret_value)
    for text in (repr(settings), str(settings), settings.model_dump_json(), f"{value}"):
        assert_no_part_of_the_secret(text)


@pytest.mark.parametrize("source", ["keyword", "environment"])
@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"jwt_secret": PASSWORD[:31]}, "ROOMCAST_JWT_SECRET"),  # 31 bytes: too short
        ({"redis_url": f"http://app:{PASSWORD}@127.0.0.1/0"}, "ROOMCAST_REDIS_URL"),
        ({"redis_url": f"redis://app:{PASSWORD}@127.0.0.1:notaport/0"}, "ROOMCAST_REDIS_URL"),
        ({"redis_url": f"redis://:{PASSWORD}@127.0.0.1:99999/0"}, "ROOMCAST_REDIS_URL"),
    ],
)
def test_an_error_about_a_secret_setting_names_it_and_never_echoes_it(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], setting: str, source: str
) -> None:
    if source == "environment":
        for name, value in values.items():
            monkeypatch.setenv(f"ROOMCAST_{name.upper()}", value)
        values = {}
    with pytest.raises(SettingsError) as refused:
        Settings(**values)
    assert setting in str(refused.value)
    assert_no_part_of_the_secret(str(refused.value))
    assert_no_part_of_the_secret(repr(refused.value))


def test_sentinels_come_from_the_environment_as_addresses_and_need_no_redis_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROOMCAST_REDIS_SENTINELS", "10.0.0.1:26379, [fd00::2]:26380")
    monkeypatch.setenv("ROOMCAST_REDIS_SENTINEL_SERVICE", "cache")
    settings = Settings()
    assert settings.sentinel_addresses() == [("10.0.0.1", 26379), ("fd00::2", 26380)]
    assert settings.redis_sentinel_service == "cache"
    assert settings.redis_url is not None  # the Redis broker, reached through the sentinels
    assert settings.redis_url.get_secret_value() == "redis://"
    kept = Settings(redis_url=f"rediss://app:{PASSWORD}@ignored:1/2")
    assert kept.redis_url is not None
    assert kept.redis_url.get_secret_value() == f"rediss://app:{PASSWORD}@ignored:1/2"


@pytest.mark.parametrize(
    ("values", "setting", "says"),
    [
        (
            {"redis_sentinels": "10.0.0.1"},
            "ROOMCAST_REDIS_SENTINELS",
            "'10.0.0.1' is not host:port",
        ),
        ({"redis_sentinels": "a:1,b:x"}, "ROOMCAST_REDIS_SENTINELS", "'b:x' is not host:port"),
        ({"redis_sentinels": "fd00::2:26379"}, "ROOMCAST_REDIS_SENTINELS", "is not host:port"),
        ({"redis_sentinels": "a:70000"}, "ROOMCAST_REDIS_SENTINELS", "port must be 1 to 65535"),
        ({"redis_sentinels": "a:1", "redis_cluster": "true"}, "ROOMCAST_REDIS_CLUSTER", "cannot"),
        ({"redis_sentinels": "a:1", "redis_url": "unix:///run/redis.sock"}, "unix://", "cannot"),
        ({"redis_sentinel_service": ""}, "ROOMCAST_REDIS_SENTINEL_SERVICE", "at least 1"),
    ],
)
def test_sentinel_settings_that_cannot_be_used_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], setting: str, says: str
) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"ROOMCAST_{name.upper()}", value)
    with pytest.raises(SettingsError) as refused:
        Settings()
    assert setting in str(refused.value)
    assert says in str(refused.value)


def test_the_idempotency_window_defaults_to_300_seconds_and_0_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings()
    assert (defaults.idempotency_window, defaults.max_idempotency_keys) == (300.0, 10_000)
    monkeypatch.setenv("ROOMCAST_IDEMPOTENCY_WINDOW", "0")
    monkeypatch.setenv("ROOMCAST_MAX_IDEMPOTENCY_KEYS", "50")
    settings = Settings()
    assert (settings.idempotency_window, settings.max_idempotency_keys) == (0.0, 50)
    assert Settings(idempotency_window=0.25).idempotency_window == 0.25


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"idempotency_window": "-1"}, "ROOMCAST_IDEMPOTENCY_WINDOW"),
        ({"idempotency_window": "soon"}, "ROOMCAST_IDEMPOTENCY_WINDOW"),
        ({"max_idempotency_keys": "0"}, "ROOMCAST_MAX_IDEMPOTENCY_KEYS"),
    ],
)
def test_idempotency_settings_that_cannot_be_used_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], setting: str
) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"ROOMCAST_{name.upper()}", value)
    with pytest.raises(SettingsError) as refused:
        Settings()
    assert setting in str(refused.value)
