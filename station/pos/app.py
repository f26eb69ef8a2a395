"""The station's point-of-sale endpoint: arm a charge, follow it, cancel it, hand over a PIN.

Served by ``station run`` on 127.0.0.1 (setting ``[pos] listen``) so that a till, a tablet on
the shop's network behind a proxy, or ``station charge --station URL`` can ask the daemon to
take the next tap as a payment. One shape of a charge (:meth:`Charge.public`) answers every
route and every event. With ``[pos] token`` set, every route but the page and ``/health``
wants ``Authorization: Bearer <token>``; the page asks for the token once and keeps it in the
tab's session storage.

    POST   /charges               {amount_sats, memo?, reader?, timeout?}   → 201 the charge
    GET    /charges/{id}                                                    → the charge
    GET    /charges/{id}/events   server-sent events: armed, tapped, invoice, pin_required,
                                  callback, state, outcome
    POST   /charges/{id}/pin      {pin}                                     → 202
    DELETE /charges/{id}          cancels a charge still armed              → the charge
    GET    /                      the POS page (keypad, memo, live state, PIN prompt)
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from station.claim.charge import Charge, ChargeError, ChargeRegistry, ReaderBusy

PIN_RE = re.compile(r"^[0-9]{4,8}$")
MAX_BODY = 4096
EVENT_STREAM_SECONDS = 900.0

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class ArmBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    amount_sats: int = Field(ge=1, le=2_100_000_000_000_000)
    memo: str = Field(default="", max_length=200)
    reader: str | None = Field(default=None, max_length=200)
    timeout: float | None = Field(default=None, gt=0, le=3600)


class PinBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    pin: str = Field(max_length=8)


def create_pos_app(
    registry: ChargeRegistry, *, token: str | None = None, readers: list[str] | None = None
) -> FastAPI:
    """The POS app for one station. ``readers`` (labels) are the names ``reader`` may take."""
    app = FastAPI(title="Boltcard station POS", docs_url=None, redoc_url=None, openapi_url=None)
    known_readers = list(readers or [])

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "send Authorization: Bearer <the [pos] token>",
                                headers={"WWW-Authenticate": "Bearer"})

    Auth = Depends(authorized)

    def find(charge_id: str) -> Charge:
        charge = registry.get(charge_id) if re.fullmatch(r"[0-9a-f]{32}", charge_id) else None
        if charge is None:
            raise HTTPException(404, "no such charge")
        return charge

    @app.middleware("http")
    async def limits_and_headers(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return JSONResponse({"detail": f"body over {MAX_BODY} bytes"}, status_code=413)
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "armed": len(registry.armed()), "readers": known_readers}

    @app.post("/charges", status_code=201, dependencies=[Auth])
    def arm(body: ArmBody) -> dict[str, Any]:
        if body.reader is not None and known_readers and body.reader not in known_readers:
            raise HTTPException(422, f"unknown reader; this station has: {known_readers}")
        try:
            charge = registry.arm(body.amount_sats, body.memo, reader=body.reader,
                                  timeout=body.timeout)
        except ReaderBusy as exc:
            raise HTTPException(409, str(exc)) from None
        except ChargeError as exc:
            raise HTTPException(422, str(exc)) from None
        return charge.public()

    @app.get("/charges/{charge_id}", dependencies=[Auth])
    def get_charge(charge_id: str) -> dict[str, Any]:
        return find(charge_id).public()

    @app.delete("/charges/{charge_id}", dependencies=[Auth])
    def cancel(charge_id: str) -> dict[str, Any]:
        charge = find(charge_id)
        try:
            registry.cancel(charge.id)
        except ChargeError as exc:
            raise HTTPException(409, str(exc)) from None
        return charge.public()

    @app.post("/charges/{charge_id}/pin", status_code=202, dependencies=[Auth])
    def pin(charge_id: str, body: PinBody) -> dict[str, Any]:
        charge = find(charge_id)
        if not PIN_RE.fullmatch(body.pin):
            raise HTTPException(422, "a PIN is 4 to 8 digits")
        if charge.final or not charge.events or charge.events[-1].kind != "pin_required":
            raise HTTPException(409, "this charge is not asking for a PIN")
        charge.offer_pin(body.pin)
        return {"accepted": True}

    @app.get("/charges/{charge_id}/events", dependencies=[Auth])
    def events(charge_id: str) -> StreamingResponse:
        charge = find(charge_id)
        return StreamingResponse(
            _sse(charge), media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(_asset("pos.html"))

    @app.get("/pos.js")
    def script() -> Response:
        return Response(_asset("pos.js"), media_type="text/javascript")

    @app.get("/pos.css")
    def style() -> Response:
        return Response(_asset("pos.css"), media_type="text/css")

    return app


def _sse(charge: Charge) -> Iterator[str]:
    for event in charge.follow(EVENT_STREAM_SECONDS):
        if event is None:
            yield ": keep-alive\n\n"
            continue
        payload = {"seq": event.seq, "at": event.at, **event.data}
        yield f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(payload)}\n\n"


def _asset(name: str) -> str:
    return resources.files("station.pos").joinpath("static", name).read_text("utf-8")
