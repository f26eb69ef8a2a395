"""EV2 authentication bookkeeping on the card: the pending exchange and the failure counters.

NT4H2421Gx §9 describes two defences against key guessing, both modelled here on the
persistent :class:`~station.emulator.state.CardState`:

* **TotFailCtr** per key: +1 per failed authentication, -TotFailCtrDecr (default 10) per
  success; at TotFailCtrLimit (default 1000) the key is blocked (PERMISSION_DENIED) until it is
  changed with ChangeKey. Configurable with SetConfiguration option 0Ah.
* **Authentication delay**: after consecutive failures the chip answers authentication
  commands with AUTHENTICATION_DELAY (91AD) until a delay, growing with each failure, has
  passed; only a successful authentication restores full speed. The chip measures the delay
  in time (each 91AD answer takes about 65 % of FWT). This emulator has no clock, so it counts
  91AD answers instead: from the :data:`DELAY_AFTER`-th consecutive failure on, the next
  ``n - DELAY_AFTER + 1`` authentication attempts (capped at :data:`DELAY_MAX_ANSWERS`) get
  91AD. The thresholds are this emulator's choice; NXP does not publish them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from station.emulator.state import CardState

DELAY_AFTER: Final = 2
DELAY_MAX_ANSWERS: Final = 8


@dataclass
class AuthPending:
    """Part 1 of AuthenticateEV2First/NonFirst is answered; part 2 (90 AF) is expected."""

    first: bool
    key_no: int
    rnd_b: bytes
    ti: bytes
    pcdcap2: bytes
    prev_cmd_ctr: int = 0


def key_blocked(nvm: CardState, key_no: int) -> bool:
    return nvm.failed_ctr_enabled and nvm.tot_fail_ctr[key_no] >= nvm.failed_ctr_limit


def take_delay(nvm: CardState) -> bool:
    """True (and one delay unit spent) if this attempt must be answered with 91AD."""
    if nvm.auth_delay_pending <= 0:
        return False
    nvm.auth_delay_pending -= 1
    return True


def record_failure(nvm: CardState, key_no: int) -> None:
    if nvm.failed_ctr_enabled:
        nvm.tot_fail_ctr[key_no] = min(nvm.tot_fail_ctr[key_no] + 1, 0xFFFF)
    nvm.consecutive_failures += 1
    if nvm.consecutive_failures >= DELAY_AFTER:
        answers = nvm.consecutive_failures - DELAY_AFTER + 1
        nvm.auth_delay_pending = min(answers, DELAY_MAX_ANSWERS)


def record_success(nvm: CardState, key_no: int) -> None:
    nvm.consecutive_failures = 0
    nvm.auth_delay_pending = 0
    if nvm.failed_ctr_enabled:
        nvm.tot_fail_ctr[key_no] = max(0, nvm.tot_fail_ctr[key_no] - nvm.failed_ctr_decr)
