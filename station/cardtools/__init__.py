"""The logic behind ``station card check | provision | wipe``, testable without argparse.

The card procedures themselves are the generator flows of :mod:`station.ntag424.flows`; this
module adds what a person at a provisioning desk needs around them:

* a card on a reader, whatever the backend (:func:`card_on_reader`), with the emulated card's
  state loaded from and saved back to a JSON file so shell runs chain like a real card;
* keys from wherever the operator keeps them (:class:`KeySource`): an issuer key
  (deterministic keys need the card's UID, which only the card knows), a keys file, a
  ``new_bolt_card_response`` or a wipe JSON, or just K1/K2;
* extra check lines the flow cannot produce alone: key versions against the keys we hold, a
  clear "not NXP-signed" and the card's counter against what the tracker last saw.

Errors are typed by what the operator must do (:class:`BadInput`, :class:`NoCard`,
:class:`EnvironmentProblem`, :class:`Refused`); none of their messages holds key material.
"""

from __future__ import annotations

from station.cardtools.check import (
    CheckResult,
    TrackerLookup,
    TrackerView,
    add_tracker_line,
    check,
    check_flow,
    database_tracker,
    http_tracker,
)
from station.cardtools.classify import Classification, classify_flow
from station.cardtools.errors import BadInput, CardToolError, EnvironmentProblem, NoCard, Refused
from station.cardtools.journal import MAX_FAILED_AUTHS, Journal
from station.cardtools.keysource import (
    KeySource,
    UidKeys,
    check_key_version,
    file_store,
    identify_keys,
    issuer_store,
    load_program,
    load_wipe_keys,
    parse_hex,
)
from station.cardtools.provision import (
    ProvisionResult,
    add_to_keys_file,
    check_keys_file,
    provision,
    url_template,
)
from station.cardtools.reader import DEFAULT_TIMEOUT, ReaderChoice, card_on_reader, run_flow
from station.cardtools.redact import redact_url
from station.cardtools.wipe import WipeResult, wipe

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_FAILED_AUTHS",
    "BadInput",
    "CardToolError",
    "CheckResult",
    "Classification",
    "EnvironmentProblem",
    "Journal",
    "KeySource",
    "NoCard",
    "ProvisionResult",
    "ReaderChoice",
    "Refused",
    "TrackerLookup",
    "TrackerView",
    "UidKeys",
    "WipeResult",
    "add_to_keys_file",
    "add_tracker_line",
    "card_on_reader",
    "check",
    "check_flow",
    "check_key_version",
    "check_keys_file",
    "classify_flow",
    "database_tracker",
    "file_store",
    "http_tracker",
    "identify_keys",
    "issuer_store",
    "load_program",
    "load_wipe_keys",
    "parse_hex",
    "provision",
    "redact_url",
    "run_flow",
    "url_template",
    "wipe",
]
