// Copy buttons: <button data-copy="VALUE">. Loaded as a file (the CSP allows no inline
// script). The clipboard API needs a secure context (https or 127.0.0.1); elsewhere the value
// is put in a hidden text field, selected and copied the old way.
(function () {
  "use strict";

  function fallback(value) {
    var field = document.createElement("textarea");
    field.value = value;
    field.setAttribute("readonly", "");
    field.className = "copy-buffer";
    document.body.appendChild(field);
    field.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(field);
    return ok;
  }

  function done(button, ok) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = ok ? "Copied" : "Copy failed";
    button.setAttribute("data-copied", ok ? "yes" : "no");
    setTimeout(function () { button.textContent = label; }, 1500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var value = button.getAttribute("data-copy") || "";
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(value).then(
        function () { done(button, true); },
        function () { done(button, fallback(value)); }
      );
    } else {
      done(button, fallback(value));
    }
  });
})();
