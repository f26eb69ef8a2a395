"""Reader side (B1 flows) against card side (EmulatedCard, written independently from the
datasheet), checked by the SUN verifier (sun.py): provision, tap many times, check, wipe.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from station.emulator.card import EmulatedCard
from station.ntag424 import commands as cmd
from station.ntag424 import flows, sun
from station.ntag424 import keys as keys_mod
from station.ntag424.errors import AuthenticationError, IntegrityError, InvalidTap
from station.ntag424.filesettings import FACTORY_NDEF_FILE
from station.ntag424.ndef import bolt_card_layout, bolt_card_template


@dataclass(frozen=True)
class Keys:
    k0: bytes
    k1: bytes
    k2: bytes
    k3: bytes
    k4: bytes


def seeded(seed: int) -> Any:
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def random_keys(rng: Any) -> Keys:
    return Keys(*(rng(16) for _ in range(5)))


class Link:
    """Counts APDUs on the way to the card (what a reader would carry)."""

    def __init__(self, card: Any) -> None:
        self.card = card
        self.count = 0

    def __call__(self, apdu: bytes) -> bytes:
        self.count += 1
        answer: bytes = self.card.transceive(apdu)
        return answer


def tap(link: Link, keys: Keys) -> tuple[bytes, int]:
    before = link.count
    url = flows.drive(flows.read_sun_url(), link)
    assert link.count - before == 3, "a tap is exactly three APDUs"
    result = sun.verify_sun_reference(sun.parse_sun_url(url), keys.k1, keys.k2)
    uid, ctr = result.identity()
    return uid, ctr


HOST = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=30)
PATH = st.text(string.ascii_letters + string.digits + "/-_.", max_size=60)
UIDS = st.binary(min_size=6, max_size=6).map(lambda b: b"\x04" + b)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), uid=UIDS, host=HOST, path=PATH, taps=st.integers(1, 6))
def test_provisioned_card_taps_verify_and_count_up(
    seed: int, uid: bytes, host: str, path: str, taps: int
) -> None:
    rng = seeded(seed)
    card = EmulatedCard(uid=uid, rng=seeded(seed + 1))
    link = Link(card)
    keys = random_keys(rng)
    template = bolt_card_template(f"lnurlw://{host}.example/{path}")
    report = flows.drive(flows.provision_bolt_card(template, keys, rng), link)
    assert report.uid == uid
    assert flows.template_of(report.url) == template
    last = report.counter
    for _ in range(taps):
        got_uid, ctr = tap(link, keys)
        assert got_uid == uid
        assert ctr == last + 1
        last = ctr
    # Verifying with the wrong K2 must fail: the MAC really depends on the provisioned key.
    url = flows.drive(flows.read_sun_url(), link)
    with pytest.raises(InvalidTap):
        sun.verify_sun_reference(sun.parse_sun_url(url), keys.k1, keys.k3)


def test_tap_with_computed_le_reads_fewer_bytes() -> None:
    rng = seeded(7)
    card = EmulatedCard.factory(rng=seeded(8))
    keys = random_keys(rng)
    template = bolt_card_template("lnurlw://pay.example.com/ln")
    flows.drive(flows.provision_bolt_card(template, keys, rng), card.transceive)
    le = bolt_card_layout(template).read_length
    url = flows.drive(flows.read_sun_url(le), card.transceive)
    uid, _ = sun.verify_sun_reference(sun.parse_sun_url(url), keys.k1, keys.k2).identity()
    assert uid == card.uid


def test_deterministic_keys_from_the_card_uid() -> None:
    issuer = bytes.fromhex("00000000000000000000000000000001")
    rng = seeded(11)
    card = EmulatedCard(uid=bytes.fromhex("04A39493CC8680"), rng=seeded(12))
    report = flows.drive(
        flows.provision_bolt_card(
            bolt_card_template("lnurlw://issuer.example/ln"),
            lambda uid: keys_mod.derive_keys(issuer, uid),
            rng,
        ),
        card.transceive,
    )
    ks = keys_mod.derive_keys(issuer, report.uid)
    # Published vector (boltcard DETERMINISTIC.md): K1 for this issuer key.
    assert ks.k1 == bytes.fromhex("55da174c9608993dc27bb3f30a4a7314")
    assert tap(Link(card), ks)[0] == report.uid


def test_provisioning_twice_is_refused() -> None:
    rng = seeded(21)
    card = EmulatedCard.factory(rng=seeded(22))
    keys = random_keys(rng)
    template = bolt_card_template("lnurlw://a.example/ln")
    flows.drive(flows.provision_bolt_card(template, keys, rng), card.transceive)
    with pytest.raises(flows.CardNotBlank):
        flows.drive(flows.provision_bolt_card(template, keys, rng), card.transceive)
    tap(Link(card), keys)  # still a working Bolt Card


def test_check_wipe_check_cycle() -> None:
    rng = seeded(31)
    card = EmulatedCard.factory(rng=seeded(32))
    pub = card.originality_public_key
    blank = flows.drive(flows.check_card(rng, public_key=pub), card.transceive)
    assert blank.signature_valid
    assert blank.factory_keys == {n: True for n in range(5)}
    assert blank.ndef_settings == FACTORY_NDEF_FILE

    keys = random_keys(rng)
    flows.drive(
        flows.provision_bolt_card(bolt_card_template("lnurlw://b.example/ln"), keys, rng),
        card.transceive,
    )
    checked = flows.drive(flows.check_card(rng, keys=keys, public_key=pub), card.transceive)
    assert checked.ok, checked.checks
    assert checked.key_versions == {n: 1 for n in range(5)}
    assert checked.sun_uid == card.uid

    wrong = random_keys(rng)
    bad = flows.drive(flows.check_card(rng, keys=wrong, public_key=pub), card.transceive)
    assert {c.name: c.ok for c in bad.checks}["sun"] is False
    assert {c.name: c.ok for c in bad.checks}["key0"] is False

    wiped = flows.drive(flows.wipe_card(keys, rng), card.transceive)
    assert wiped.uid == card.uid
    after = flows.drive(flows.check_card(rng, public_key=pub), card.transceive)
    assert after.factory_keys == {n: True for n in range(5)}
    assert after.key_versions == {n: 0 for n in range(5)}
    assert after.ndef_settings == FACTORY_NDEF_FILE
    # And it can be provisioned again.
    flows.drive(
        flows.provision_bolt_card(bolt_card_template("lnurlw://c.example/ln"), keys, rng),
        card.transceive,
    )
    tap(Link(card), keys)


def test_nxp_key_does_not_accept_the_emulated_cards_signature() -> None:
    card = EmulatedCard.factory(rng=seeded(41))
    report = flows.drive(flows.check_card(seeded(42)), card.transceive)
    assert report.signature_valid is False


def test_wipe_refuses_wrong_keys_before_changing_anything() -> None:
    rng = seeded(51)
    card = EmulatedCard.factory(rng=seeded(52))
    keys = random_keys(rng)
    flows.drive(
        flows.provision_bolt_card(bolt_card_template("lnurlw://d.example/ln"), keys, rng),
        card.transceive,
    )
    with pytest.raises(InvalidTap):
        flows.drive(flows.wipe_card(random_keys(rng), rng), card.transceive)
    tap(Link(card), keys)


@pytest.mark.parametrize("which", [0, 3, 4])
def test_wipe_with_a_wrong_key_changes_nothing(which: int) -> None:
    rng = seeded(61 + which)
    card = EmulatedCard.factory(rng=seeded(62))
    keys = random_keys(rng)
    flows.drive(
        flows.provision_bolt_card(bolt_card_template("lnurlw://e.example/ln"), keys, rng),
        card.transceive,
    )
    given_keys = [keys.k0, keys.k1, keys.k2, keys.k3, keys.k4]
    given_keys[which] = bytes(16)
    with pytest.raises(AuthenticationError):
        flows.drive(flows.wipe_card(Keys(*given_keys), rng), card.transceive)
    # Untouched: still taps with the issued keys, and the full wipe then succeeds.
    tap(Link(card), keys)
    flows.drive(flows.wipe_card(keys, rng), card.transceive)


def test_change_key_with_wrong_old_key_is_an_integrity_error() -> None:
    """The card checks CRC32NK(New) after XOR with its current key (AN12196 §6.16.1)."""
    rng = seeded(71)
    card = EmulatedCard.factory(rng=seeded(72))
    flows.drive(cmd.iso_select_application(), card.transceive)
    session = flows.drive(flows.authenticate(0, bytes(16), rng), card.transceive)
    with pytest.raises(IntegrityError):
        flows.drive(cmd.change_key(session, 3, rng(16), 1, b"\x01" * 16), card.transceive)
    assert not session.active


def test_many_taps_verify_with_the_fast_verifier() -> None:
    rng = seeded(81)
    card = EmulatedCard.factory(rng=seeded(82))
    keys = random_keys(rng)
    report = flows.drive(
        flows.provision_bolt_card(bolt_card_template("lnurlw://f.example/ln"), keys, rng),
        card.transceive,
    )
    assert report.counter == 1, "the read-back is the card's first SDM read"
    verifier = sun.SunVerifier(keys.k1, keys.k2)
    seen: set[str] = {report.url}
    last = report.counter
    for _ in range(200):
        url = flows.drive(flows.read_sun_url(), card.transceive)
        params = sun.parse_sun_url(url)
        uid, ctr = verifier.verify(params).identity()
        assert uid == card.uid
        assert ctr == last + 1
        last = ctr
        assert url not in seen, "every tap must produce a fresh URL"
        seen.add(url)
