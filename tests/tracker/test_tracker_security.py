"""Password hashing, station tokens and settings loading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tracker.security import (
    generate_station_token,
    hash_password,
    hash_token,
    token_matches,
    verify_password,
)
from tracker.settings import SettingsError, load_settings


def test_password_hash_verifies_and_is_salted() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second  # per-user salt
    assert verify_password("correct horse", first)
    assert verify_password("correct horse", second)
    assert not verify_password("correct horsf", first)
    assert "correct horse" not in first


def test_password_hash_is_scrypt_with_stored_parameters() -> None:
    """Recompute the digest independently with hashlib.scrypt from the stored fields."""
    import base64

    stored = hash_password("pw")
    scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
    assert scheme == "scrypt"

    def unb64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    expected = hashlib.scrypt(
        b"pw", salt=unb64(salt_b64), n=int(n), r=int(r), p=int(p), dklen=32, maxmem=64 << 20
    )
    assert unb64(digest_b64) == expected


@pytest.mark.parametrize(
    "stored", ["", "garbage", "scrypt$1$2", "bcrypt$a$b$c$d$e", "scrypt$x$8$1$AA$AA"]
)
def test_malformed_stored_hash_never_verifies(stored: str) -> None:
    assert verify_password("anything", stored) is False


def test_station_token_is_random_and_stored_as_sha256() -> None:
    token = generate_station_token()
    assert token != generate_station_token()
    assert len(token) >= 40
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token_matches(token, hash_token(token))
    assert not token_matches(token + "x", hash_token(token))


def test_settings_precedence_file_then_env_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "tracker.toml"
    config.write_text('[tracker]\nport = 9000\nhost = "0.0.0.0"\nsecret_key = "from-file"\n')
    env = {"TRACKER_PORT": "9100", "TRACKER_DATABASE_URL": "postgresql://u@db/x"}
    settings = load_settings(config_path=config, env=env, host="127.0.0.2")
    assert settings.port == 9100
    assert settings.host == "127.0.0.2"
    assert settings.secret_key == "from-file"
    assert settings.database_url == "postgresql+psycopg://u@db/x"
    assert "from-file" not in repr(settings)


def test_settings_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="port"):
        load_settings(env={"TRACKER_PORT": "eighty"}, persist_secret=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'prot'"):
        load_settings(config_path=bad, env={}, persist_secret=False)
    with pytest.raises(SettingsError, match="not found"):
        load_settings(config_path=tmp_path / "missing.toml", env={})


def test_secret_key_is_generated_once_and_persisted_next_to_the_db(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/data/tracker.sqlite"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tracker.sqlite").touch()  # kept only once the database exists
    first = load_settings(env={"TRACKER_DATABASE_URL": url})
    second = load_settings(env={"TRACKER_DATABASE_URL": url})
    assert first.secret_key and first.secret_key == second.secret_key
    key_file = tmp_path / "data" / "tracker.secret"
    assert key_file.read_text().strip() == first.secret_key
    assert key_file.stat().st_mode & 0o077 == 0  # owner-only
