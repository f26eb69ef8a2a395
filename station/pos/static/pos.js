// The POS page: type an amount, arm a charge, follow it over server-sent events.
// The event stream cannot send an Authorization header, so with a token set the page
// polls GET /charges/{id} instead; without one it listens to /charges/{id}/events.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let digits = "";
  let current = null;
  let source = null;
  let poller = null;
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

  function token() { return sessionStorage.getItem("pos-token") || ""; }
  function headers() {
    const h = { "Content-Type": "application/json" };
    if (token()) h.Authorization = "Bearer " + token();
    return h;
  }
  function show(el, on) { el.hidden = !on; }
  function setError(text) { $("error").textContent = text || ""; }

  function render(charge) {
    const st = $("state");
    st.textContent = charge.state;
    st.className = "state " + charge.state;
    let text = WORDS[charge.state] || "";
    if (charge.reason && charge.state !== "armed") text += " " + charge.reason;
    $("detail").textContent = text;
    const done = FINAL.includes(charge.state) || charge.state === "claimed";
    show($("cancel"), charge.state === "armed");
    show($("again"), done);
    if (FINAL.includes(charge.state)) { show($("pinform"), false); stop(); }
  }

  function stop() {
    if (source) { source.close(); source = null; }
    if (poller) { clearInterval(poller); poller = null; }
  }

  async function api(method, path, body) {
    const resp = await fetch(path, { method, headers: headers(), body: body && JSON.stringify(body) });
    const data = await resp.json().catch(() => ({}));
    if (resp.status === 401) { show($("tokenform"), true); throw new Error("This station wants its POS token."); }
    if (!resp.ok) throw new Error(typeof data.detail === "string" ? data.detail : "HTTP " + resp.status);
    return data;
  }

  function follow(charge) {
    if (token()) {
      poller = setInterval(async () => {
        try { const c = await api("GET", "/charges/" + charge.id); render(c); } catch (e) { setError(e.message); }
      }, 500);
      return;
    }
    source = new EventSource("/charges/" + charge.id + "/events");
    const onState = (ev) => { const d = JSON.parse(ev.data); current.state = d.state; current.reason = d.reason; render(current); };
    source.addEventListener("state", onState);
    source.addEventListener("outcome", (ev) => { current = Object.assign(current, JSON.parse(ev.data)); render(current); });
    source.addEventListener("tapped", () => { current.state = "tapped"; render(current); });
    source.addEventListener("pin_required", (ev) => {
      const d = JSON.parse(ev.data);
      $("detail").textContent = "Enter the card's PIN (try " + d.attempt + " of " + d.tries + ").";
      show($("pinform"), true);
      $("pin").value = "";
      $("pin").focus();
    });
    source.addEventListener("pin_wrong", () => setError("Wrong PIN."));
    source.onerror = () => { if (current && FINAL.includes(current.state)) stop(); };
  }

  function press(key) {
    if (key === "clear") digits = "";
    else if (key === "back") digits = digits.slice(0, -1);
    else if (digits.length < 12) digits = (digits + key).replace(/^0+/, "");
    $("amount").textContent = digits ? Number(digits).toLocaleString("en-US").replace(/,/g, " ") : "0";
  }

  document.querySelectorAll(".keypad button").forEach((b) => b.addEventListener("click", () => press(b.dataset.key)));
  $("charge").addEventListener("click", async () => {
    setError("");
    const amount = Number(digits);
    if (!amount) { setError("Type an amount first."); return; }
    try {
      current = await api("POST", "/charges", { amount_sats: amount, memo: $("memo").value });
      show($("entry"), false); show($("progress"), true); render(current); follow(current);
    } catch (e) { setError(e.message); }
  });
  $("cancel").addEventListener("click", async () => {
    try { const c = await api("DELETE", "/charges/" + current.id); render(c); } catch (e) { setError(e.message); }
  });
  $("again").addEventListener("click", () => {
    stop(); digits = ""; press("clear"); current = null; setError("");
    show($("progress"), false); show($("entry"), true);
  });
  $("pinform").addEventListener("submit", async (ev) => {
    ev.preventDefault(); setError("");
    try { await api("POST", "/charges/" + current.id + "/pin", { pin: $("pin").value }); show($("pinform"), false); }
    catch (e) { setError(e.message); }
    $("pin").value = "";
  });
  $("tokenform").addEventListener("submit", (ev) => {
    ev.preventDefault(); sessionStorage.setItem("pos-token", $("token").value); show($("tokenform"), false);
  });
})();
