/* Copy buttons: <button class="copy" data-copy="FULL VALUE">. One listener on the document, so
 * buttons in rows that static/live.js adds later work too, and no inline handler is needed
 * (the pages' CSP allows scripts from 'self' only).
 *
 * The value is the one in data-copy, never the shortened text beside it. The icon is drawn by
 * tracker.css (no font has to carry a glyph for it); after a copy the button turns green for a
 * moment (data-copied="yes", which the browser tests read) and its title says "Copied".
 */
(function () {
  "use strict";

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "copy-buffer";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  function show(button, label, state) {
    var before = button.getAttribute("data-title") || button.title;
    button.setAttribute("data-title", before);
    button.title = label;
    button.setAttribute("data-copied", state);
    setTimeout(function () {
      button.title = before;
      button.removeAttribute("data-copied");
    }, 1500);
  }

  document.addEventListener("click", function (ev) {
    var button = ev.target.closest ? ev.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    ev.preventDefault();
    copy(button.getAttribute("data-copy")).then(
      function () { show(button, "Copied", "yes"); },
      function () { show(button, "Could not copy: select the text instead", "no"); }
    );
  });
})();
