/* The stations page: the "Copy" button next to a token shown once.
 *
 * No inline handlers (the page's Content-Security-Policy allows only scripts from /static).
 * The token is copied from the element's text; where the Clipboard API is refused (an
 * insecure context, a denied permission), the text is selected so the operator can copy it
 * by hand, and the button says so.
 */
(function () {
  "use strict";

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  function copied(id, text) {
    var note = document.querySelector('[data-copied-for="' + id + '"]');
    if (note) { note.textContent = text; note.hidden = false; }
  }

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var id = button.getAttribute("data-copy");
      var el = document.getElementById(id);
      if (!el) { return; }
      var text = el.textContent.trim();
      selectText(el);
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(
          function () { copied(id, "copied"); },
          function () { copied(id, "selected: press Ctrl+C"); }
        );
      } else {
        copied(id, "selected: press Ctrl+C");
      }
    });
  });
}());
