"""Multi-step card procedures as generator flows, in the style of httpx's ``Auth.auth_flow``.

A flow yields each C-APDU and receives the R-APDU back (``r_apdu = yield c_apdu``); it never
sees a reader. :func:`drive` runs a flow against any ``transceive(bytes) -> bytes`` — a PC/SC
card, nfcpy, the emulated card, or a list of recorded answers (:class:`Replay`).

Flows here:

* :func:`read_sun_url` — the tap: select the NDEF application, select E104, one ReadBinary.
* :func:`authenticate` — EV2First, or EV2NonFirst inside a running session.
* :func:`provision_bolt_card` — blank card → Bolt Card (URL template, SDM, keys 1-4 then 0),
  then read back and verify.
* :func:`wipe_card` — prove the keys (SUN + key 0), restore factory settings and keys.
* :func:`check_card` — GetVersion, originality signature, file settings, key versions,
  factory-key probes, SUN check: a structured report.

Randomness (RndA) comes from an injected ``rng(n) -> bytes`` so transcripts replay exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, Protocol, TypeVar

from station.ntag424 import commands as cmd
from station.ntag424 import sun
from station.ntag424.apdu import Flow
from station.ntag424.errors import (
    AuthenticationDelay,
    AuthenticationError,
    CardError,
    InvalidTap,
    Ntag424Error,
    ProtocolError,
    UsageError,
)
from station.ntag424.filesettings import (
    FACTORY_NDEF_FILE,
    NDEF_FILE_NO,
    CommMode,
    FileSettings,
    bolt_card_ndef_settings,
)
from station.ntag424.ndef import (
    MAC_PLACEHOLDER,
    NDEF_FILE_SIZE,
    PICC_PLACEHOLDER,
    BoltCardLayout,
    bolt_card_layout,
    url_from_file,
)
from station.ntag424.session import AuthenticateEV2First, AuthenticateEV2NonFirst, Session
from station.ntag424.signature import NXP_NTAG424_PUBLIC_KEY, verify_originality

T = TypeVar("T")

Rng = Callable[[int], bytes]
"""Injected randomness: ``rng(n)`` returns ``n`` random bytes (``os.urandom`` in production)."""

FACTORY_KEY: Final = bytes(16)
FACTORY_KEY_VERSION: Final = 0x00


class CardKeys(Protocol):
    """The five application keys of one card (``station.ntag424.keys.KeySet`` fits)."""

    @property
    def k0(self) -> bytes: ...
    @property
    def k1(self) -> bytes: ...
    @property
    def k2(self) -> bytes: ...
    @property
    def k3(self) -> bytes: ...
    @property
    def k4(self) -> bytes: ...


def _key_list(keys: CardKeys) -> list[bytes]:
    out = [keys.k0, keys.k1, keys.k2, keys.k3, keys.k4]
    for i, k in enumerate(out):
        if len(k) != 16:
            raise UsageError(f"key {i} must be 16 bytes")
    return out


class CardNotBlank(Ntag424Error):
    """Provisioning refused: the card is not factory-fresh. Wipe it with its keys first."""


class ReadbackMismatch(ProtocolError):
    """The card did not read back what was just written: do not hand it out."""


# -- driving --------------------------------------------------------------------------------


def drive(flow: Flow[T], transceive: Callable[[bytes], bytes]) -> T:
    """Run ``flow`` to completion, sending each C-APDU through ``transceive``."""
    try:
        c_apdu = next(flow)
        while True:
            c_apdu = flow.send(transceive(c_apdu))
    except StopIteration as done:
        result: T = done.value
        return result


class Replay:
    """A ``transceive`` that answers from a recorded list and records what was sent.

    With ``expected`` C-APDUs given, a different command raises :class:`AssertionError` at once,
    which makes transcript tests point at the first wrong byte.
    """

    def __init__(self, answers: Iterable[bytes], expected: Iterable[bytes] | None = None) -> None:
        self.answers = list(answers)
        self.expected = None if expected is None else list(expected)
        self.sent: list[bytes] = []

    def __call__(self, c_apdu: bytes) -> bytes:
        i = len(self.sent)
        self.sent.append(c_apdu)
        if self.expected is not None:
            want = self.expected[i] if i < len(self.expected) else b""
            if c_apdu != want:
                raise AssertionError(f"C-APDU #{i}: sent {c_apdu.hex()}, expected {want.hex()}")
        if i >= len(self.answers):
            raise AssertionError(f"no recorded answer for C-APDU #{i} {c_apdu.hex()}")
        return self.answers[i]


# -- the tap ----------------------------------------------------------------------------------


def read_sun_url(le: int = 0) -> Flow[str]:
    """Read the SUN URL in exactly three APDUs: select app, select E104, ReadBinary.

    ``le=0`` reads up to 256 bytes (the whole NDEF file); a caller that knows its template can
    pass ``BoltCardLayout.read_length`` to move fewer bytes over the air.
    """
    data = yield from read_ndef_file(le)
    return url_from_file(data)


def read_ndef_file(le: int = 0) -> Flow[bytes]:
    """The three APDUs of :func:`read_sun_url`, returning the raw file bytes (NLEN first)."""
    yield from cmd.iso_select_application()
    yield from cmd.iso_select_file(cmd.NDEF_FILE_ID)
    data = yield from cmd.iso_read_binary(0, le)
    return data


def authenticate(
    key_no: int, key: bytes, rng: Rng, session: Session | None = None
) -> Flow[Session]:
    """EV2First (new transaction) or, inside an active ``session``, EV2NonFirst."""
    handshake: AuthenticateEV2First | AuthenticateEV2NonFirst
    if session is not None and session.active:
        handshake = AuthenticateEV2NonFirst(key_no, key, rng(16), session)
    else:
        handshake = AuthenticateEV2First(key_no, key, rng(16))
    r1 = yield handshake.command1()
    r2 = yield handshake.command2(r1)
    return handshake.finish(r2)


def _verify_sun(url: str, k1: bytes, k2: bytes) -> tuple[bytes, int]:
    """Check a read-back SUN URL with the team's verifier (``sun.py``): (UID, counter)."""
    result = sun.verify_sun_reference(sun.parse_sun_url(url), k1, k2)
    return result.identity()


def template_of(url: str, picc_param: str = "p", mac_param: str = "c") -> str:
    """The URL with the mirrored ``p``/``c`` values put back to their zero placeholders."""
    out = url
    for name, placeholder in ((picc_param, PICC_PLACEHOLDER), (mac_param, MAC_PLACEHOLDER)):
        for sep in ("?", "&"):
            marker = f"{sep}{name}="
            at = out.find(marker)
            if at >= 0:
                start = at + len(marker)
                out = out[:start] + placeholder + out[start + len(placeholder) :]
                break
    return out


# -- provisioning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionReport:
    uid: bytes
    url: str = field(repr=False)  # holds a fresh p/c: a spendable tap, never in a log
    counter: int
    layout: BoltCardLayout
    file_settings: FileSettings
    key_version: int


def provision_bolt_card(
    url_template: str,
    keys: CardKeys | Callable[[bytes], CardKeys],
    rng: Rng,
    *,
    key_version: int = 1,
) -> Flow[ProvisionReport]:
    """Program a factory-fresh card as a Bolt Card and prove the result.

    ``keys`` may be a key set or a function of the card's UID (deterministic keys need the
    UID, which only GetCardUID reveals on random-ID cards). Steps: authenticate key 0 with the
    factory key (else :class:`CardNotBlank`), check keys 1-4 are at version 0 and the NDEF
    file has no SDM, write the NDEF URL, ChangeFileSettings (SDM: PICC data under key 1, MAC
    under key 2, MAC input offset = MAC offset), ChangeKey 1-4, then key 0. Read back: the
    SUN URL verifies with K1/K2 and the card's UID, the file settings are as written, key 0
    authenticates and every key reports ``key_version``.
    """
    layout = bolt_card_layout(url_template)
    if not 1 <= key_version <= 0xFF:
        raise UsageError("use a non-zero key version: 0 marks factory keys")
    expected = bolt_card_ndef_settings(layout.picc_data_offset, layout.mac_offset)

    yield from cmd.iso_select_application()
    try:
        session = yield from authenticate(0, FACTORY_KEY, rng)
    except AuthenticationError as exc:
        raise CardNotBlank("key 0 is not the factory key: wipe the card first") from exc
    for key_no in range(1, 5):
        version = yield from cmd.get_key_version(key_no, session)
        if version != FACTORY_KEY_VERSION:
            raise CardNotBlank(f"key {key_no} has version {version:02X}: wipe the card first")
    current = yield from cmd.get_file_settings(NDEF_FILE_NO, session)
    if current.sdm is not None:
        raise CardNotBlank("the NDEF file already has SDM settings: wipe the card first")
    uid = yield from cmd.get_card_uid(session)
    card_keys = keys(uid) if callable(keys) else keys
    new = _key_list(card_keys)

    yield from cmd.write_data(NDEF_FILE_NO, 0, layout.file_data, current.comm_mode, session)
    yield from cmd.change_file_settings(session, NDEF_FILE_NO, expected)
    for key_no in range(1, 5):
        yield from cmd.change_key(session, key_no, new[key_no], key_version, FACTORY_KEY)
    yield from cmd.change_key(session, 0, new[0], key_version)

    # Read back over the path a merchant's station will use.
    url = yield from read_sun_url()
    if template_of(url) != layout.template:
        raise ReadbackMismatch("the card's URL does not match the template written")
    sun_uid, counter = _verify_sun(url, new[1], new[2])
    if sun_uid != uid:
        raise ReadbackMismatch("the SUN UID differs from GetCardUID")
    settings = yield from cmd.get_file_settings(NDEF_FILE_NO)
    if replace(settings, size=None, file_type=0) != replace(expected, size=None, file_type=0):
        raise ReadbackMismatch("the NDEF file settings differ from those written")
    session = yield from authenticate(0, new[0], rng)
    for key_no in range(5):
        version = yield from cmd.get_key_version(key_no, session)
        if version != key_version:
            raise ReadbackMismatch(f"key {key_no} reports version {version:02X}")
    return ProvisionReport(uid, url, counter, layout, settings, key_version)


# -- wiping ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WipeReport:
    uid: bytes
    last_counter: int


def wipe_card(keys: CardKeys, rng: Rng) -> Flow[WipeReport]:
    """Prove the keys, then restore factory file settings, NDEF contents and keys.

    Proof first (nothing is changed until then): the SUN URL verifies with K1/K2, key 0
    authenticates (EV2First) and GetCardUID matches the SUN UID, keys 3 and 4 authenticate
    (EV2NonFirst). A wrong key raises (``InvalidTap`` or ``AuthenticationError``) with the card
    untouched. Keys 4..1 are changed before key 0.
    """
    old = _key_list(keys)
    url = yield from read_sun_url()
    sun_uid, counter = _verify_sun(url, old[1], old[2])
    session = yield from authenticate(0, old[0], rng)
    uid = yield from cmd.get_card_uid(session)
    if uid != sun_uid:
        raise ProtocolError("the SUN UID differs from GetCardUID; refusing to wipe")
    # K3 and K4 never show in a tap: prove them with EV2NonFirst before anything changes,
    # then come back to key 0, which ChangeKey and ChangeFileSettings need.
    for key_no in (3, 4):
        session = yield from authenticate(key_no, old[key_no], rng, session)
    session = yield from authenticate(0, old[0], rng, session)

    yield from cmd.change_file_settings(session, NDEF_FILE_NO, FACTORY_NDEF_FILE)
    yield from cmd.write_data(NDEF_FILE_NO, 0, bytes(NDEF_FILE_SIZE), CommMode.PLAIN, session)
    for key_no in (4, 3, 2, 1):
        yield from cmd.change_key(session, key_no, FACTORY_KEY, FACTORY_KEY_VERSION, old[key_no])
    yield from cmd.change_key(session, 0, FACTORY_KEY, FACTORY_KEY_VERSION)

    yield from cmd.iso_select_application()
    session = yield from authenticate(0, FACTORY_KEY, rng)
    settings = yield from cmd.get_file_settings(NDEF_FILE_NO, session)
    if settings.sdm is not None or settings.access != FACTORY_NDEF_FILE.access:
        raise ReadbackMismatch("the NDEF file settings were not restored")
    for key_no in range(5):
        version = yield from cmd.get_key_version(key_no, session)
        if version != FACTORY_KEY_VERSION:
            raise ReadbackMismatch(f"key {key_no} reports version {version:02X} after wipe")
    return WipeReport(uid, counter)


# -- checking -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One pass/fail line of ``station check``."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class CardReport:
    """Everything ``check`` learnt about a card; ``checks`` holds the pass/fail lines."""

    version: cmd.VersionInfo | None = None
    signature_valid: bool | None = None
    ndef_settings: FileSettings | None = None
    url: str | None = field(default=None, repr=False)  # a fresh p/c: never in a log
    key_versions: dict[int, int] = field(default_factory=dict)
    factory_keys: dict[int, bool] = field(default_factory=dict)
    sun_uid: bytes | None = None
    sun_counter: int | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (bytes as hex), for ``--json``. Holds no key material."""

        def conv(value: Any) -> Any:
            if isinstance(value, bytes):
                return value.hex().upper()
            if isinstance(value, dict):
                return {str(k): conv(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [conv(v) for v in value]
            return value

        out: dict[str, Any] = conv(asdict(self))
        out["ok"] = self.ok
        return out


def check_card(
    rng: Rng,
    *,
    keys: CardKeys | None = None,
    public_key: bytes = NXP_NTAG424_PUBLIC_KEY,
    probe_factory_keys: bool = True,
) -> Flow[CardReport]:
    """Inspect a card without changing it (only the SDM read counter moves).

    Card errors of optional steps become failed checks, not exceptions; a broken protocol
    (bad MAC, malformed answer) still raises.
    """
    report = CardReport()
    yield from cmd.iso_select_application()
    version = yield from cmd.get_version()
    report.version = version
    report.add(
        "ntag424_dna",
        version.looks_like_ntag424_dna,
        f"HW {version.hw.hex().upper()} SW {version.sw.hex().upper()}",
    )

    try:
        sig = yield from cmd.read_sig()
    except CardError as exc:
        report.add("originality_signature", False, f"Read_Sig refused: {exc.sw:04X}")
    else:
        if version.random_uid:
            report.add("originality_signature", False, "random ID on: the UID needs key 0")
        else:
            report.signature_valid = verify_originality(version.uid, sig, public_key)
            report.add("originality_signature", report.signature_valid)

    settings: FileSettings | None = None
    try:
        settings = yield from cmd.get_file_settings(NDEF_FILE_NO)
        report.ndef_settings = settings
        for key_no in range(5):
            report.key_versions[key_no] = yield from cmd.get_key_version(key_no)
    except CardError as exc:
        report.add("file_settings", False, f"card answered {exc.sw:04X}")

    try:
        data = yield from read_ndef_file()
        report.url = url_from_file(data)
    except (CardError, ProtocolError) as exc:
        report.add("ndef_url", False, str(exc))
    else:
        report.add("ndef_url", True, report.url)
        if settings is not None:
            _check_layout(report, settings, report.url)

    if keys is not None and report.url is not None:
        k = _key_list(keys)
        try:
            report.sun_uid, report.sun_counter = _verify_sun(report.url, k[1], k[2])
            report.add("sun", True, f"counter {report.sun_counter}")
        except (InvalidTap, UsageError) as exc:
            report.add("sun", False, getattr(exc, "reason", str(exc)))
    if keys is not None:
        k = _key_list(keys)
        try:
            yield from authenticate(0, k[0], rng)
            report.add("key0", True)
        except CardError as exc:
            report.add("key0", False, f"card answered {exc.sw:04X}")

    # A key whose version is not 00 has been changed (ChangeKey always sets a version; the
    # factory one is 00). Only keys still at 00 are probed, because each failed EV2First
    # moves the card towards its authentication delay (91AD).
    for key_no, key_version in report.key_versions.items():
        if key_version != FACTORY_KEY_VERSION:
            report.factory_keys[key_no] = False
    if probe_factory_keys:
        yield from cmd.iso_select_application()  # a clean state after any failed step
        for key_no in range(5):
            if key_no in report.factory_keys:
                continue
            try:
                yield from authenticate(key_no, FACTORY_KEY, rng)
                report.factory_keys[key_no] = True
            except AuthenticationError:
                report.factory_keys[key_no] = False
            except AuthenticationDelay:
                break  # the card wants a pause; leave the rest unknown
    factory = sorted(n for n, f in report.factory_keys.items() if f)
    unknown = sorted(set(range(5)) - set(report.factory_keys))
    detail = f"factory keys: {factory}" if factory else "no key is the factory key"
    if unknown:
        detail += f"; not probed: {unknown}"
    report.add("keys_changed", not factory and not unknown, detail)
    return report


def _check_layout(report: CardReport, settings: FileSettings, url: str) -> None:
    sdm = settings.sdm
    if sdm is None:
        report.add("sdm", False, "the NDEF file has no SDM settings (not a Bolt Card)")
        return
    try:
        layout = bolt_card_layout(template_of(url))
    except UsageError as exc:
        report.add("sdm", False, f"URL is not a Bolt Card template: {exc}")
        return
    want = bolt_card_ndef_settings(layout.picc_data_offset, layout.mac_offset).sdm
    report.add(
        "sdm",
        sdm == want,
        "PICC data under key 1, MAC under key 2, offsets match the URL"
        if sdm == want
        else f"SDM settings {sdm} differ from the Bolt Card layout {want}",
    )
    report.add(
        "ndef_access",
        settings.access.write != 0xE and settings.access.change != 0xE,
        f"read {settings.access.read:X} write {settings.access.write:X} "
        f"change {settings.access.change:X}",
    )
