"""The API's error answers that are built in more than one place.

The app's exception handlers (``tracker.web.app``) and the tap lane
(``tracker.web.tap_lane``, which answers outside FastAPI's handlers) must say exactly the same
thing for the same failure, so both take their bodies and headers from here.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from tracker.db import DatabaseBusy

log = logging.getLogger("tracker.web.app")


def busy() -> tuple[int, dict[str, Any], dict[str, str]]:
    """SQLite's write lock held elsewhere: 503 and when to retry (a station retries)."""
    body = {"detail": {"reason": "database_busy", "message": str(DatabaseBusy())}}
    return 503, body, {"Retry-After": str(DatabaseBusy.retry_after_s)}


def internal_error(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """Log the exception being handled under a fresh reference and answer with that
    reference only: an operator can quote it, the answer carries no internals."""
    ref = uuid.uuid4().hex[:12]
    log.exception("unhandled error %s on %s %s", ref, method, path)
    body = {
        "detail": {
            "reason": "internal_error",
            "message": "the tracker hit an unexpected error; the log has details",
            "ref": ref,
        }
    }
    return ref, body
