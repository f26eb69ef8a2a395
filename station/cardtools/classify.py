"""What is the card on the reader, before anything acts on it — found without authenticating.

Every card tool starts here, because a wrong guess costs authentication attempts, and the chip
counts failed ones (NT4H2421Gx §9: TotFailCtr per key, a key blocked for good at its limit).
The classification uses only commands that need no key (§10: GetVersion, GetKeyVersion,
GetFileSettings with free access, ISOReadBinary of the NDEF file) and, when SDM is on, a SUN
check with the K1/K2 we hold (pure computation on the reader).

Key versions tell the story, because our procedures change keys in a fixed order and
ChangeKey always writes a version (00 marks a factory key):

* provision changes keys 1, 2, 3, 4 to version V, then key 0: key 0 at 00 with some of
  1-4 at V is a provision cut off in its key changes;
* wipe turns SDM off first, zeroes the NDEF file, then keys 4, 3, 2, 1 to 00, then key 0: key 0
  at V with SDM off (or some of 1-4 back at 00) is a wipe cut off half-way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from station.ntag424 import commands as cmd
from station.ntag424 import flows, keys, sun
from station.ntag424.apdu import Flow
from station.ntag424.errors import CardError, InvalidTap, ProtocolError, UsageError
from station.ntag424.filesettings import NDEF_FILE_NO, FileSettings
from station.ntag424.ndef import url_from_file

BLANK: Final = "blank"
CONFIGURED: Final = "ours-configured"
PARTIAL_PROVISION: Final = "ours-partially-provisioned"
PARTIAL_WIPE: Final = "ours-partially-wiped"
FOREIGN: Final = "another-issuer"
UNKNOWN: Final = "unknown"
STATES: Final = (BLANK, CONFIGURED, PARTIAL_PROVISION, PARTIAL_WIPE, FOREIGN, UNKNOWN)

KeysFor = Callable[[bytes], "keys.KeySet | None"]


@dataclass
class Classification:
    """The card's state and the facts it was read from (no key material, no fresh URL)."""

    state: str
    detail: str
    uid: bytes | None = None
    key_versions: list[int] = field(default_factory=list)
    sdm_on: bool = False
    ndef_settings: FileSettings | None = None
    url: str | None = field(default=None, repr=False)  # may be a fresh p/c: never in a log
    sun_verified: bool = False
    sun_counter: int | None = None
    card_keys: keys.KeySet | None = field(default=None, repr=False)
    looks_like_ntag424: bool = True
    random_uid: bool = False

    @property
    def changed_keys(self) -> list[int]:
        """Keys whose version is not 00 (changed from the factory key)."""
        return [n for n, v in enumerate(self.key_versions) if v != flows.FACTORY_KEY_VERSION]

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "uid": None if self.uid is None else self.uid.hex().upper(),
            "key_versions": [f"{v:02X}" for v in self.key_versions],
            "changed_keys": self.changed_keys,
            "sdm": self.sdm_on,
            "sun_verified": self.sun_verified,
        }


def classify_flow(keys_for: KeysFor | None) -> Flow[Classification]:
    """Read the card without a key and decide its state against the keys we hold.

    ``keys_for(uid)`` gives our keys for a card (``None``: not ours / no keys given). A card
    with random ID on hides its UID; then only a SUN URL that verifies can name it.
    """
    yield from cmd.iso_select_application()
    version = yield from cmd.get_version()
    found = Classification(UNKNOWN, "", looks_like_ntag424=version.looks_like_ntag424_dna,
                           random_uid=version.random_uid)
    if not version.looks_like_ntag424_dna:
        found.detail = "not an NTAG 424 DNA (GetVersion)"
        return found
    if not version.random_uid:
        found.uid = version.uid
    try:
        found.ndef_settings = yield from cmd.get_file_settings(NDEF_FILE_NO)
        found.key_versions = []
        for key_no in range(5):
            found.key_versions.append((yield from cmd.get_key_version(key_no)))
    except CardError as exc:
        found.detail = f"the card refused GetFileSettings/GetKeyVersion ({exc.sw:04X})"
        return found
    found.sdm_on = found.ndef_settings.sdm is not None
    try:
        data = yield from flows.read_ndef_file()
        found.url = url_from_file(data)
    except (CardError, ProtocolError):
        found.url = None
    found.card_keys = None if found.uid is None or keys_for is None else keys_for(found.uid)
    _verify_sun(found)
    _decide(found, keys_for is not None)
    return found


def _verify_sun(found: Classification) -> None:
    if not found.sdm_on or found.url is None or found.card_keys is None:
        return
    try:
        result = sun.verify_sun_reference(
            sun.parse_sun_url(found.url), found.card_keys.k1, found.card_keys.k2
        )
    except (InvalidTap, UsageError):
        return
    uid, counter = result.identity()
    if found.uid is None or uid == found.uid:
        found.sun_verified, found.sun_counter = True, counter
        found.uid = uid


def _decide(found: Classification, have_keys: bool) -> None:
    versions = found.key_versions
    changed = found.changed_keys
    ours_version = None if found.card_keys is None else found.card_keys.version
    foreign_versions = [n for n in changed if versions[n] != ours_version]
    if not changed and not found.sdm_on:
        found.state, found.detail = BLANK, "every key at version 00, SDM off"
        return
    if not have_keys or found.card_keys is None:
        found.state = UNKNOWN
        found.detail = (
            f"keys changed: {changed}, SDM {'on' if found.sdm_on else 'off'}; "
            + ("no keys given" if not have_keys else "none of the keys we hold are for this card")
        )
        return
    if foreign_versions:
        shown = ", ".join(f"{n}:{versions[n]:02X}" for n in foreign_versions)
        found.state = FOREIGN
        found.detail = f"key versions {shown} are not ours ({ours_version:02X}): not our card"
        return
    key0_changed = versions[0] != flows.FACTORY_KEY_VERSION
    if not key0_changed:
        found.state = PARTIAL_PROVISION
        found.detail = f"key 0 still factory; keys changed: {changed or 'none'}" + (
            ", SDM on" if found.sdm_on else ""
        )
        return
    if found.sdm_on and len(changed) == 5:
        if found.sun_verified:
            found.state, found.detail = CONFIGURED, "SUN verifies with our K1/K2"
        else:
            found.state = FOREIGN
            found.detail = "the keys given do not verify its SUN URL (the key versions match ours)"
        return
    if found.sdm_on:
        found.state = UNKNOWN
        found.detail = f"SDM on with keys {sorted(set(range(5)) - set(changed))} at factory"
        return
    wiped = [n for n in range(1, 5) if n not in changed]
    found.state = PARTIAL_WIPE
    found.detail = "SDM off, key 0 changed; " + (
        f"keys back to factory: {wiped}" if wiped else "no key changed back yet"
    )
