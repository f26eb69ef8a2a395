// The POS page: type an amount, arm a charge, follow it live, hand over the card's PIN.
// The charge's event stream is read with fetch(), not EventSource: EventSource cannot send
// the Authorization header a [pos] token needs, and polling GET /charges/{id} would never
// see the PIN prompt (pin_required is an event, not a state). One way for both cases.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const FINAL = ["paid", "refused", "expired", "cancelled", "timeout"];
  const WORDS = {
    armed: "Tap the card on the reader.",
    tapped: "Card read. Asking the card's issuer…",
    sending: "Claiming the payment…",
    claimed: "The issuer accepted the claim; waiting for the payment…",
    pending: "The issuer is paying; this can take a moment…",
    unknown: "No answer from the issuer; watching the invoice…",
    paid: "Paid.",
    refused: "Refused.",
    expired: "The invoice expired unpaid.",
    cancelled: "Cancelled.",
    timeout: "No card was tapped in time.",
  };
  let digits = "";
  let current = null;   // the charge on screen
  let stream = null;    // AbortController of the event stream being read
  let lastSeq = -1;     // events up to this one are shown (a reconnect replays from the first)
  let retry = null;     // what to do again once the token is saved

  const token = () => sessionStorage.getItem("pos-token") || "";
  const show = (el, on) => { el.hidden = !on; };
  const setError = (text) => { $("error").textContent = text || ""; };
  const sats = (n) => Number(n).toLocaleString("en-US").replace(/,/g, "\u202f");

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    if (token()) h.Authorization = "Bearer " + token();
    return h;
  }

  async function api(method, path, body) {
    const resp = await fetch(path, {
      method, headers: headers(body !== undefined), cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 401) throw needToken();
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(typeof data.detail === "string" ? data.detail : "HTTP " + resp.status);
    return data;
  }

  function needToken() {
    const had = token();
    sessionStorage.removeItem("pos-token");
    show($("tokenform"), true);
    $("token").value = "";
    $("token").focus();
    return new Error(had ? "The station refused that token; type it again."
                         : "This station wants its POS token.");
  }

  function render() {
    const c = current;
    $("state").textContent = c.state;
    $("state").className = "state " + c.state;
    let text = WORDS[c.state] || "";
    if (c.reason && !["armed", "paid", "cancelled"].includes(c.state)) text += " " + c.reason;
    $("detail").textContent = text;
    $("summary").textContent = sats(c.amount_sats) + " sats" + (c.memo ? " · " + c.memo : "");
    const final = FINAL.includes(c.state);
    show($("cancel"), c.state === "armed");
    show($("again"), final || c.state === "claimed");
    if (final) { show($("pinform"), false); stop(); }
  }

  function askPin(d) {
    $("detail").textContent = "Customer: enter the card's PIN (try " + d.attempt + " of " + d.tries + ").";
    show($("pinform"), true);
    $("pin").value = "";
    $("pin").focus();
  }

  function onEvent(kind, d) {
    if (typeof d.seq === "number") {
      if (d.seq <= lastSeq) return;
      lastSeq = d.seq;
    }
    if (kind === "pin_required") { askPin(d); return; }
    if (kind === "pin_wrong") { setError(d.reason || "Wrong PIN."); return; }
    if (kind === "invoice" || kind === "callback" || kind === "armed") return;
    if (kind === "tapped") current.state = "tapped";
    else if (kind === "state") { current.state = d.state; current.reason = d.reason; }
    else if (kind === "outcome") Object.assign(current, d);
    else return;
    show($("pinform"), false);
    render();
  }

  // Server-sent events over fetch: "event:" and "data:" lines, a blank line ends one event.
  async function follow(id) {
    const ctl = new AbortController();
    stream = ctl;
    try {
      const resp = await fetch("/charges/" + id + "/events", { headers: headers(false), signal: ctl.signal });
      if (resp.status === 401) throw needToken();
      if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let kind = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data && current && current.id === id) onEvent(kind, JSON.parse(data));
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
      setError(e.message);
    }
    // The stream ended (or broke) before the end of the charge: pick it up again.
    if (stream === ctl && current && current.id === id && !FINAL.includes(current.state)) {
      setTimeout(() => { if (stream === ctl) follow(id); }, 1000);
    }
  }

  function stop() {
    if (stream) { stream.abort(); stream = null; }
  }

  function press(key) {
    if (key === "clear") digits = "";
    else if (key === "back") digits = digits.slice(0, -1);
    else if (digits.length < 12) digits = (digits + key).replace(/^0+/, "");
    $("amount").textContent = digits ? sats(digits) : "0";
  }

  async function charge() {
    setError("");
    const amount = Number(digits);
    if (!amount) { setError("Type an amount first."); return; }
    try {
      current = await api("POST", "/charges", { amount_sats: amount, memo: $("memo").value });
    } catch (e) { retry = charge; setError(e.message); return; }
    retry = null;
    lastSeq = -1;
    show($("entry"), false);
    show($("progress"), true);
    render();
    follow(current.id);
  }

  async function cancel() {
    setError("");
    try { current = Object.assign(current, await api("DELETE", "/charges/" + current.id)); render(); }
    catch (e) { retry = cancel; setError(e.message); }
  }

  async function sendPin(ev) {
    ev.preventDefault();
    setError("");
    const pin = $("pin").value;
    $("pin").value = "";
    if (!/^[0-9]{4,8}$/.test(pin)) { setError("A PIN is 4 to 8 digits."); return; }
    // Say "sent" before sending: the issuer may refuse a wrong PIN and the next prompt may
    // arrive on the event stream before this request's answer does; it must win.
    show($("pinform"), false);
    $("detail").textContent = "PIN sent; claiming the payment…";
    try {
      await api("POST", "/charges/" + current.id + "/pin", { pin });
    } catch (e) { setError(e.message); }
  }

  function again() {
    stop();
    current = null;
    press("clear");
    $("memo").value = "";
    setError("");
    show($("pinform"), false);
    show($("progress"), false);
    show($("entry"), true);
  }

  document.querySelectorAll(".keypad button").forEach((b) => b.addEventListener("click", () => press(b.dataset.key)));
  $("charge").addEventListener("click", charge);
  $("cancel").addEventListener("click", cancel);
  $("again").addEventListener("click", again);
  $("pinform").addEventListener("submit", sendPin);
  $("tokenform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    sessionStorage.setItem("pos-token", value);
    show($("tokenform"), false);
    setError("");
    if (retry) retry();
  });
})();
