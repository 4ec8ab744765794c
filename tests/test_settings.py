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
