"""A stand-in card for reader tests: just enough ISO 7816 to prove bytes travel both ways.

Reader tests check transport, not the NTAG 424 command set, so this card answers:
SELECT by name → 9000 (6A82 for an unknown AID), READ BINARY → Le bytes of a counting pattern,
``FF CA 00 00 00`` → UID || 9000 and ``FF 00 40 …`` → 9000 like an ACR122U, anything else 6D00.
"""

from __future__ import annotations

NDEF_AID = bytes.fromhex("D2760000850101")  # NFC Forum Type 4 Tag NDEF application


class StubCard:
    def __init__(self, uid: bytes = bytes.fromhex("04A1B2C3D4E5F6")) -> None:
        self.uid = uid
        self.selected = False
        self.apdus: list[bytes] = []
        self.last_feedback: bytes | None = None
        self.resets = 0

    def transceive(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        if apdu[:4] == b"\xff\xca\x00\x00":
            return self.uid + b"\x90\x00"
        if apdu[:3] == b"\xff\x00\x40":
            self.last_feedback = apdu
            return b"\x90\x00"
        if apdu[:4] == b"\x00\xa4\x04\x00" and len(apdu) >= 5:
            aid = apdu[5 : 5 + apdu[4]]
            self.selected = aid == NDEF_AID
            return b"\x90\x00" if self.selected else b"\x6a\x82"
        if apdu[:2] == b"\x00\xb0" and len(apdu) == 5:
            if not self.selected:
                return b"\x69\x86"
            size = apdu[4] or 256
            return bytes(i & 0xFF for i in range(size)) + b"\x90\x00"
        return b"\x6d\x00"

    def deselect(self) -> None:
        self.selected = False

    def power_cycle(self) -> None:
        self.resets += 1
        self.selected = False


def bolt_card(uid: bytes = bytes.fromhex("04C0FFEE000180")) -> object:
    """A real ``EmulatedCard`` provisioned as a Bolt Card (issuer key all zero, test only)."""
    import os

    from station.emulator.card import EmulatedCard
    from station.ntag424.flows import drive, provision_bolt_card
    from station.ntag424.keys import derive_keys
    from station.ntag424.ndef import bolt_card_template

    card = EmulatedCard.factory(uid)
    keys = derive_keys(bytes(16), uid)
    template = bolt_card_template("lnurlw://card.example.com/ln")
    drive(provision_bolt_card(template, keys, os.urandom), card.transceive)
    card.deselect()
    return card
