"""``station sun verify``: check a SUN URL (or a stream of them) against keys.

Keys come from ``--k1/--k2`` (one card's SDM meta/file read keys), ``--issuer-key`` (Bolt Card
deterministic keys) and/or ``--keys FILE`` (per-card keys). Output is JSON on stdout; errors
are one line on stderr, never a traceback and never a key.

Exit codes: 0 valid, 1 invalid tap (or, with ``--batch``, at least one line not valid),
2 malformed input or bad options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from station.cli import EXIT_BAD_INPUT, EXIT_NEGATIVE, EXIT_OK
from station.cli.options import DEFAULT_KEY_VERSION, BadInput, key_arg, version_arg

if TYPE_CHECKING:
    from station.ntag424.sun import SunParams

# The protocol core (keys, sun, errors) is imported inside the functions that use it, and
# _Keys is a NamedTuple rather than a dataclass: ``station`` start-up registers every
# subcommand, and only a run of this one needs any of that.

_PROG = "station sun verify"
_CHUNK = 1 << 16


class _Keys(NamedTuple):
    """What the verify loop needs, whichever key option was given."""

    fast: Callable[[str, str], tuple[bytes, int]]
    """Bolt Card p/c hex in, (UID, counter) out."""
    full: Callable[[SunParams], dict[str, Any]]
    """Any SUN message in, the JSON fields of a valid tap out."""


def register(subparsers: Any) -> None:
    sun = subparsers.add_parser("sun", help="verify SUN (Secure Unique NFC) URLs")
    actions = sun.add_subparsers(dest="sun_command", metavar="ACTION")
    actions.required = True
    verify = actions.add_parser(
        "verify",
        help="verify a Bolt Card / SDM URL",
        description=(
            "Verify a SUN URL such as lnurlw://host/path?p=<32 hex>&c=<16 hex> (or "
            "?picc_data=…&enc=…&cmac=…). Prints {'valid': true, 'uid', 'counter', …} and exits 0, "
            "or {'valid': false, 'reason'} and exits 1; malformed input exits 2. With --batch, "
            "reads one URL per line from stdin and writes one JSON line per URL, in order "
            "(fields: valid, uid, counter, enc_file_data when present; or valid, reason, and "
            "malformed: true for unparseable lines); exit 1 if any line is not valid."
        ),
    )
    verify.add_argument("url", nargs="?", help="the URL; read from stdin when omitted or '-'")
    verify.add_argument("--k1", metavar="HEX", help="SDM meta read key (decrypts p)")
    verify.add_argument("--k2", metavar="HEX", help="SDM file read key (checks c)")
    verify.add_argument("--issuer-key", metavar="HEX", help="Bolt Card deterministic issuer key")
    verify.add_argument(
        "--version",
        type=str,
        metavar="N",
        help=f"key version for --issuer-key (default {DEFAULT_KEY_VERSION}, or the keys file's)",
    )
    verify.add_argument("--keys", metavar="FILE", help="per-card keys file (JSON)")
    verify.add_argument(
        "--batch", action="store_true", help="verify one URL per stdin line, JSON lines out"
    )
    verify.set_defaults(func=run_verify)


# ---------------------------------------------------------------------------------------------
# Options


def _result_fields(
    uid: bytes | None, counter: int | None, tag: int, enc: bytes | None
) -> dict[str, Any]:
    return {
        "valid": True,
        "uid": None if uid is None else uid.hex(),
        "counter": counter,
        "picc_data_tag": f"{tag:02x}",
        "enc_file_data": None if enc is None else enc.hex(),
    }


def _build_keys(args: argparse.Namespace) -> _Keys:
    from station.ntag424.errors import UsageError
    from station.ntag424.sun import SunVerifier

    pair = args.k1 is not None or args.k2 is not None
    store = args.issuer_key is not None or args.keys is not None
    if pair and store:
        raise BadInput("use either --k1/--k2 or --issuer-key/--keys, not both")
    if not pair and not store:
        raise BadInput("keys needed: --k1 HEX --k2 HEX, --issuer-key HEX, or --keys FILE")
    version = version_arg(args.version)
    if pair:
        if args.k1 is None or args.k2 is None:
            raise BadInput("--k1 and --k2 go together")
        if version is not None:
            raise BadInput("--version only applies to --issuer-key")
        verifier = SunVerifier(key_arg(args.k1, "--k1"), key_arg(args.k2, "--k2"))

        def full_pair(params: SunParams) -> dict[str, Any]:
            r = verifier.verify(params)
            return _result_fields(r.uid, r.counter, r.picc_data_tag, r.enc_file_data)

        return _Keys(fast=verifier.verify_bolt_hex, full=full_pair)

    from station.ntag424.keys import KeyStore  # only key stores need key derivation

    issuer = None if args.issuer_key is None else key_arg(args.issuer_key, "--issuer-key")
    try:
        if args.keys is not None:
            keystore = KeyStore.from_file(args.keys, issuer_key=issuer, issuer_version=version)
        else:
            assert issuer is not None
            if version is None:
                version = DEFAULT_KEY_VERSION  # not ``version or …``: 0 is a key version too
            keystore = KeyStore(issuer_key=issuer, issuer_version=version)
    except UsageError as exc:  # MalformedInput included
        raise BadInput(str(exc)) from None

    def full_store(params: SunParams) -> dict[str, Any]:
        m = keystore.verify(params)
        r = m.result
        fields = _result_fields(r.uid, r.counter, r.picc_data_tag, r.enc_file_data)
        fields["key_source"] = m.source
        fields["key_version"] = m.keys.version
        if m.card_name:
            fields["card_name"] = m.card_name
        return fields

    return _Keys(fast=keystore.verify_bolt_hex, full=full_store)


# ---------------------------------------------------------------------------------------------
# Single URL


def _read_single_url(arg: str | None) -> str:
    if arg is not None and arg != "-":
        return arg
    try:
        text = sys.stdin.read()
    except (UnicodeDecodeError, OSError):
        raise BadInput("could not read a URL from stdin") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise BadInput("no URL given (argument or stdin)")
    if len(lines) > 1:
        raise BadInput("several URLs on stdin; use --batch")
    return lines[0]


def _verify_one(keys: _Keys, url: str) -> int:
    from station.ntag424.errors import InvalidTap, MalformedInput
    from station.ntag424.sun import parse_sun_url

    try:
        params = parse_sun_url(url)
        fields = keys.full(params)
    except InvalidTap as exc:
        print(json.dumps({"valid": False, "reason": exc.reason}))
        return EXIT_NEGATIVE
    except MalformedInput as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(fields))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Batch


def _run_batch(keys: _Keys) -> int:
    """Stream stdin to stdout: read what is available, answer every complete line, flush.

    ``os.read`` returns as soon as some input is there, so an interactive producer gets its
    answers per line, and a pipe full of URLs is handled 64 KiB at a time. The common Bolt Card
    shape (``…?p=<32>&c=<16>``, exactly the lines :func:`split_bolt_url` accepts, inlined here
    for speed) is verified without URL parsing; every other line, and every line the fast path
    refuses, goes through :func:`parse_sun_url` and the full verifier, which give the same
    verdicts (property-tested) and the precise message. Valid lines are formatted by hand (UID
    hex and an integer never need escaping); reasons are JSON-encoded.
    """
    from station.ntag424.errors import InvalidTap, MalformedInput
    from station.ntag424.sun import parse_sun_url, split_bolt_url

    fast = keys.fast
    full = keys.full
    invalid_cache: dict[str, str] = {}
    bad_lines = 0

    def answer(line: str) -> str:
        """The general path for one line."""
        nonlocal bad_lines
        line = line.strip()
        try:
            parts = split_bolt_url(line)
            if parts is not None:
                uid, counter = fast(parts[0], parts[1])
                return f'{{"valid":true,"uid":"{uid.hex()}","counter":{counter}}}'
            fields = full(parse_sun_url(line))
        except InvalidTap as exc:
            bad_lines += 1
            text = invalid_cache.get(exc.reason)
            if text is None:
                text = invalid_cache[exc.reason] = json.dumps(
                    {"valid": False, "reason": exc.reason}, separators=(",", ":")
                )
            return text
        except MalformedInput as exc:
            bad_lines += 1
            return json.dumps(
                {"valid": False, "malformed": True, "reason": str(exc)}, separators=(",", ":")
            )
        out: dict[str, Any] = {
            "valid": True,
            "uid": fields["uid"],
            "counter": fields["counter"],
        }
        if fields["enc_file_data"] is not None:
            out["enc_file_data"] = fields["enc_file_data"]
        return json.dumps(out, separators=(",", ":"))

    def answer_all(lines: list[str]) -> list[str]:
        out: list[str] = []
        append = out.append
        for line in lines:
            n = len(line)
            if (
                n >= 54
                and line.find("?") == n - 54
                and line.startswith("p=", n - 53)
                and line.startswith("&c=", n - 19)
                and "#" not in line
            ):
                try:
                    uid, counter = fast(line[n - 51 : n - 19], line[n - 16 :])
                except (InvalidTap, MalformedInput):
                    append(answer(line))
                    continue
                append(f'{{"valid":true,"uid":"{uid.hex()}","counter":{counter}}}')
            else:
                append(answer(line))
        return out

    fd = sys.stdin.fileno()
    out_buffer = sys.stdout.buffer
    write = out_buffer.write
    flush = out_buffer.flush
    pending = b""
    while True:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            break
        data = pending + chunk if pending else chunk
        cut = data.rfind(b"\n") + 1
        if not cut:
            pending = data
            continue
        pending = data[cut:]
        # latin-1 maps every byte to one character: non-ASCII input cannot crash the decoder
        # and is refused by the URL checks instead.
        lines = data[:cut].decode("latin-1").split("\n")
        lines.pop()  # the empty string after the final newline
        answers = answer_all(lines)
        answers.append("")
        write("\n".join(answers).encode("ascii"))
        flush()
    if pending:
        write((answer(pending.decode("latin-1")) + "\n").encode("ascii"))
        flush()
    return EXIT_OK if bad_lines == 0 else EXIT_NEGATIVE


# ---------------------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    try:
        keys = _build_keys(args)
        if args.batch:
            if args.url is not None and args.url != "-":
                raise BadInput("--batch reads URLs from stdin; drop the URL argument")
            return _run_batch(keys)
        return _verify_one(keys, _read_single_url(args.url))
    except BadInput as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away: stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
