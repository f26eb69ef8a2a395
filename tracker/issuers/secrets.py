"""Issuer API keys and webhook secrets, encrypted at rest with Fernet.

Why Fernet: it authenticates before it decrypts (a tampered row fails, it does not decrypt to
garbage) and it is a well-kept recipe, so no hand-made crypto. The key is
``settings.issuer_key`` (``TRACKER_ISSUER_KEY``, a ``Fernet.generate_key()`` value) or, when
that is empty, one derived from ``settings.secret_key`` with HMAC-SHA256 under a purpose label,
so the cookie-signing key itself never encrypts anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

from tracker.settings import TrackerSettings

_PURPOSE = b"tracker issuer secrets v1"


class SecretUnreadable(RuntimeError):
    """A stored issuer secret does not decrypt with this tracker's key (the issuer key or the
    secret key changed): set the old TRACKER_ISSUER_KEY back, or remove and re-add the issuer."""


class SecretBox:
    """Encrypt and decrypt issuer secrets with one process's key. ``repr`` shows no key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_settings(cls, settings: TrackerSettings) -> SecretBox:
        if settings.issuer_key:
            try:
                return cls(settings.issuer_key.encode("ascii"))
            except (ValueError, UnicodeError):
                raise ValueError(
                    "TRACKER_ISSUER_KEY must be a Fernet key (32 url-safe base64 bytes); "
                    "make one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                ) from None
        if not settings.secret_key:
            raise ValueError("set TRACKER_ISSUER_KEY or TRACKER_SECRET_KEY to store issuers")
        digest = hmac.new(settings.secret_key.encode(), _PURPOSE, hashlib.sha256).digest()
        return cls(base64.urlsafe_b64encode(digest))

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretUnreadable(SecretUnreadable.__doc__ or "") from None

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"
