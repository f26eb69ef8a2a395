/* Live updates for the operator pages (server-sent events from /events).
 *
 * Pages work without this script; it only adds rows and refreshes counters as taps and
 * payouts arrive. Every value is inserted with textContent, never as HTML, because aliases,
 * station names and reasons are typed by people.
 *
 * Each event's data is the API's own public shape (TapPublic / PayoutPublic, as JSON), the
 * same objects GET /api/v1/taps and /api/v1/payouts list.
 *
 * Markup contract:
 *   <table data-live="tap|payout" [data-card="UID"] [data-limit="20"]> with <th data-col="...">
 *   <tr data-id="..."> rows; cells showing a card carry data-card-uid="UID"
 *   <section data-summary-url="/summary.json?..."> containing <* data-stat="key" data-fmt="sats">
 */
(function () {
  "use strict";
  if (!window.EventSource) { return; }

  var BADGES = {
    AwaitingApproval: "pending", AwaitingPayment: "pending", InProgress: "progress",
    Completed: "ok", Cancelled: "bad", Failed: "bad", accepted: "ok", refused: "bad"
  };

  function fmtSats(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f");
  }

  // ISO 8601 (as TapPublic / PayoutPublic serialise it) -> "YYYY-MM-DD HH:MM:SS" in the
  // operator's time zone (<body data-tz>), the same text the server's templates show.
  var ZONE = document.body.getAttribute("data-tz") || "UTC";
  var zoned = null;
  try {
    zoned = new Intl.DateTimeFormat("en-CA", {
      timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"
    });
  } catch (e) { zoned = null; }
  function fmtTime(iso) {
    if (!iso) { return ""; }
    if (!zoned) { return String(iso).slice(0, 19).replace("T", " "); }
    var p = {};
    zoned.formatToParts(new Date(iso)).forEach(function (part) { p[part.type] = part.value; });
    return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute + ":" + p.second;
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function badge(value) {
    var span = el("span", null, "badge badge-" + (BADGES[value] || "neutral"));
    // "AwaitingApproval" may break before its second word on a narrow screen, as on the server.
    String(value).split(/(?=[A-Z])/).forEach(function (part, i) {
      if (i > 0) { span.appendChild(document.createElement("wbr")); }
      span.appendChild(document.createTextNode(part));
    });
    span.setAttribute("data-state", value);
    return span;
  }

  // The full value beside its short form; static/copy.js handles the click.
  function copyButton(value, what) {
    var b = el("button", null, "copy");
    b.type = "button";
    b.setAttribute("data-copy", value);
    b.title = "Copy " + what + " " + value;
    b.setAttribute("aria-label", "Copy " + what);
    return b;
  }

  function ident(node, value, what) {
    var wrap = el("span", null, "ident");
    wrap.appendChild(node);
    wrap.appendChild(copyButton(value, what));
    return wrap;
  }

  // The label is the server's (card_label: the alias, else "04A1…E5F6"); no rule of our own.
  function cardLink(d) {
    var a = el("a", d.card_label || d.card_uid);
    a.href = "/cards/" + encodeURIComponent(d.card_uid);
    a.setAttribute("data-card-uid", d.card_uid);
    a.title = d.card_uid;
    if (!d.card_alias) { a.className = "mono"; }
    return ident(a, d.card_uid, "card UID");
  }

  // An unproven UID (bad MAC, foreign card) is never drawn as a link to the card.
  function claimed(d) {
    var span = el("span", "claims " + (d.card_label || d.card_uid), "claimed mono");
    span.setAttribute("data-claimed-uid", d.card_uid);
    span.title = d.card_uid + ": " + d.trust_note;
    return ident(span, d.card_uid, "claimed UID");
  }

  function cell(col, d, topic) {
    var td = el("td");
    switch (col) {
      case "time":
        var moment = d.received_at || d.created || "";
        var open = el("a"); open.href = d.tap_url || d.url;
        fmtTime(moment).split(" ").forEach(function (part, i) {
          if (i > 0) { open.appendChild(document.createTextNode(" ")); }
          open.appendChild(el("span", part, "nw"));
        });
        td.appendChild(open); td.title = moment; td.className = "time"; break;
      case "id":
        var a = el("a", "#" + d.id); a.href = d.url; td.appendChild(a); break;
      case "card":
        if (d.card_uid && d.trust_note) { td.appendChild(claimed(d)); }
        else if (d.card_uid) { td.appendChild(cardLink(d)); }
        else { td.textContent = "—"; }
        break;
      case "station": td.textContent = d.station || "—"; break;
      case "counter": td.textContent = d.counter; td.className = "num"; break;
      case "outcome":
        td.appendChild(badge(d.outcome));
        if (d.trust_note) {
          var mark = el("span", d.trust_note, "badge badge-warn");
          mark.setAttribute("data-verified", "false");
          mark.title = "the UID is only what the tap claimed: not counted for the card";
          td.appendChild(document.createTextNode(" "));
          td.appendChild(mark);
        }
        break;
      case "reason":
        td.className = "wrap";
        if (d.reason) {
          var words = el("span", d.reason_text || d.reason);
          words.title = d.reason; words.setAttribute("data-reason", d.reason);
          td.appendChild(words);
        }
        break;
      case "amount": td.textContent = fmtSats(d.amount_sats); td.className = "num"; break;
      case "state": td.appendChild(badge(d.state)); break;
      default: td.textContent = d[col] === undefined ? "" : d[col];
    }
    return td;
  }

  function buildRow(table, d, topic) {
    var tr = el("tr", null, "fresh");
    tr.setAttribute("data-id", d.id);
    var cols = table.querySelectorAll("thead th[data-col]");
    for (var i = 0; i < cols.length; i++) {
      var td = cell(cols[i].getAttribute("data-col"), d, topic);
      // Columns that collapse on a phone (class "opt" on the header) collapse in new rows too.
      if (cols[i].classList.contains("opt")) { td.classList.add("opt"); }
      tr.appendChild(td);
    }
    return tr;
  }

  function accepts(table, d) {
    var card = table.getAttribute("data-card");
    if (card && d.card_uid !== card) { return false; }
    var station = table.getAttribute("data-station");
    if (station && d.station !== station) { return false; }
    return true;
  }

  function upsert(topic, d) {
    var tables = document.querySelectorAll('table[data-live="' + topic + '"]');
    for (var i = 0; i < tables.length; i++) {
      var table = tables[i];
      if (!accepts(table, d)) { continue; }
      var body = table.tBodies[0];
      var row = body.querySelector('tr[data-id="' + String(d.id).replace(/[^0-9]/g, "") + '"]');
      var fresh = buildRow(table, d, topic);
      if (row) { body.replaceChild(fresh, row); continue; }
      var empty = body.querySelector("tr.empty");
      if (empty) { body.removeChild(empty); }
      body.insertBefore(fresh, body.firstChild);
      var limit = parseInt(table.getAttribute("data-limit") || "50", 10);
      while (body.rows.length > limit) { body.removeChild(body.lastChild); }
    }
  }

  function updateCard(d) {
    var links = document.querySelectorAll("[data-card-uid]");
    for (var i = 0; i < links.length; i++) {
      if (links[i].getAttribute("data-card-uid") !== d.uid) { continue; }
      if (links[i].tagName === "A") {
        links[i].textContent = d.card_label || d.uid;
        links[i].classList.toggle("mono", !d.alias);
      } else { links[i].textContent = d.alias || d.uid; }
    }
  }

  var summaryTimer = null;
  function refreshSummary() {
    if (summaryTimer) { return; }
    summaryTimer = setTimeout(function () {
      summaryTimer = null;
      var sections = document.querySelectorAll("[data-summary-url]");
      Array.prototype.forEach.call(sections, function (section) {
        fetch(section.getAttribute("data-summary-url"), {
          credentials: "same-origin", headers: { "Accept": "application/json" }
        }).then(function (r) { return r.ok ? r.json() : null; }).then(function (stats) {
          if (!stats) { return; }
          var nodes = section.querySelectorAll("[data-stat]");
          for (var i = 0; i < nodes.length; i++) {
            var key = nodes[i].getAttribute("data-stat");
            if (!(key in stats)) { continue; }
            var v = stats[key];
            nodes[i].textContent = nodes[i].getAttribute("data-fmt") === "sats" ? fmtSats(v) : v;
          }
        }).catch(function () { /* next event retries */ });
      });
    }, 400);
  }

  // Charts cost a few queries each: redraw them at most every 2 s, from the server's own SVG
  // (labels are escaped there), so they stay in step with the counters.
  var chartsTimer = null;
  function refreshCharts() {
    if (chartsTimer) { return; }
    chartsTimer = setTimeout(function () {
      chartsTimer = null;
      var sections = document.querySelectorAll("[data-charts-url]");
      Array.prototype.forEach.call(sections, function (section) {
        fetch(section.getAttribute("data-charts-url"), {
          credentials: "same-origin", headers: { "Accept": "text/html" }
        }).then(function (r) { return r.ok ? r.text() : null; }).then(function (markup) {
          if (markup === null) { return; }
          section.innerHTML = markup;
          document.body.setAttribute("data-charts-refreshed", String(Date.now()));
        }).catch(function () { /* next event retries */ });
      });
    }, 2000);
  }

  function handler(topic) {
    return function (ev) {
      var d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      if (topic === "card") { updateCard(d); return; }
      upsert(topic, d);
      refreshSummary();
      refreshCharts();
      document.body.setAttribute("data-last-event", topic + ":" + d.id);
    };
  }

  var status = document.getElementById("live-status");
  var source = new EventSource("/events");
  source.addEventListener("open", function () {
    if (status) { status.classList.add("on"); status.title = "live"; }
    document.body.setAttribute("data-live", "on");
  });
  source.addEventListener("error", function () {
    if (status) { status.classList.remove("on"); status.title = "reconnecting"; }
    document.body.setAttribute("data-live", "off");
  });
  source.addEventListener("tap", handler("tap"));
  source.addEventListener("payout", handler("payout"));
  source.addEventListener("card", handler("card"));
})();
