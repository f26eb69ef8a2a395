"""Real BOLT11 invoices signed with a published TEST node key (for the demo wallet and tests).

Why real ones: the station decodes every invoice it gets with the ``bolt11`` package and checks
amount and payment hash, so the demo and the tests must hand it invoices that a real wallet would
accept as well-formed. The node key below is derived from a public phrase: anybody can compute
it, so it must never be used for a node that holds real funds. Invoices are for regtest
(``lnbcrt``) so no mainnet wallet would try to pay one.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import bolt11
from bolt11.models.tags import Tag, TagChar, Tags

# TEST KEY, published: sha256 of this phrase. Never a real node's key.
TEST_NODE_PRIVATE_KEY = hashlib.sha256(
    b"boltcard-station demo wallet TEST node key - never hold real funds with it"
).hexdigest()
CURRENCY = "bcrt"
MIN_FINAL_CLTV = 18


def sign_invoice(
    *,
    amount_msat: int,
    payment_hash: str,
    description: str,
    expiry_s: int,
    created_at: int | None = None,
    private_key: str = TEST_NODE_PRIVATE_KEY,
) -> str:
    """Encode and sign a BOLT11 for ``amount_msat`` and ``payment_hash`` (hex)."""
    tags = Tags(
        [
            Tag(TagChar.payment_hash, payment_hash),
            Tag(TagChar.payment_secret, secrets.token_hex(32)),
            Tag(TagChar.description, description),
            Tag(TagChar.expire_time, expiry_s),
            Tag(TagChar.min_final_cltv_expiry, MIN_FINAL_CLTV),
        ]
    )
    invoice = bolt11.Bolt11(
        currency=CURRENCY,
        date=int(time.time()) if created_at is None else created_at,
        tags=tags,
        amount_msat=bolt11.MilliSatoshi(amount_msat),
    )
    return str(bolt11.encode(invoice, private_key))


def new_preimage() -> tuple[str, str]:
    """A fresh random preimage and its payment hash, both hex."""
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()
