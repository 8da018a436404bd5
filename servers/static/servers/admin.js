/* Copy buttons, confirmations, and the one-time secret page's address. No dependencies. */
"use strict";
(function () {
  function status(button, text) {
    // The status line of the button's own panel (a page may have several), else the page's.
    var panel = button.closest(".pm-panel");
    var box = (panel && panel.querySelector(".pm-copy-status")) ||
      document.querySelector(".pm-copy-status");
    if (box) { box.textContent = text; }
    button.textContent = text === "Copied." ? "Copied" : "Copy";
  }

  function fallbackCopy(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    return done;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) { return; }
    var node = document.getElementById(button.getAttribute("data-copy-target"));
    if (!node) { return; }
    var text = node.textContent;
    var ok = function () { status(button, "Copied."); };
    var manual = function () {
      status(button, fallbackCopy(node) ? "Copied." : "Selected: press Ctrl+C to copy.");
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(ok, manual);
    } else {
      manual();
    }
  });

  document.addEventListener("submit", function (event) {
    var button = event.submitter || event.target.querySelector("[data-confirm]");
    var message = button && button.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });

  // Tabs: a button shows its panel (data-tab) and hides its siblings' panels.
  document.addEventListener("click", function (event) {
    var tab = event.target.closest("[data-tab]");
    if (!tab) { return; }
    var tabs = tab.parentNode.querySelectorAll("[data-tab]");
    Array.prototype.forEach.call(tabs, function (other) {
      var shown = other === tab;
      other.setAttribute("aria-selected", shown ? "true" : "false");
      var panel = document.getElementById(other.getAttribute("data-tab"));
      if (panel) { panel.hidden = !shown; }
    });
  });

  var replace = document.getElementById("pm-replace-url");
  if (replace && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", replace.getAttribute("data-url"));
  }
})();
