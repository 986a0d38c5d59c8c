// correlator's page: copy the ID, open/close rows, subtrees and repeated-call groups, findings → spans.
// No data is read from the page into HTML: only `hidden`, classes and aria attributes change.
"use strict";

(function () {
  function rowsOf(wf) { return wf.children; }

  // One pass over the rows in tree order: a row is hidden inside a closed subtree or a closed group.
  function refresh(wf) {
    var rows = rowsOf(wf), hideBelow = -1, closedGroups = {};
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i], depth = +row.dataset.d, hide = false;
      if (hideBelow >= 0 && depth > hideBelow) {
        hide = true;
      } else {
        hideBelow = -1;
        if (row.classList.contains("grp")) {
          var gt = row.querySelector(".gt");
          if (gt.getAttribute("aria-expanded") !== "true") closedGroups[row.dataset.gid] = true;
        } else if (row.dataset.g && closedGroups[row.dataset.g]) {
          hide = true; hideBelow = depth;
        } else {
          var tw = row.firstElementChild.querySelector(".tw");
          if (tw && tw.getAttribute("aria-expanded") === "false") hideBelow = depth;
        }
      }
      if (row.hidden !== hide) row.hidden = hide;
    }
  }

  function setOpen(button, open, closedMark, openMark) {
    button.setAttribute("aria-expanded", open ? "true" : "false");
    if (closedMark) button.firstChild.nodeValue = button.firstChild.nodeValue.replace(open ? closedMark : openMark, open ? openMark : closedMark);
  }

  // Make a span's row visible: open every ancestor subtree and its group.
  function reveal(wf, row) {
    var depth = +row.dataset.d, rows = rowsOf(wf);
    for (var i = Array.prototype.indexOf.call(rows, row); i >= 0; i--) {
      var r = rows[i], d = +r.dataset.d;
      if (r.classList.contains("grp")) {
        if (r.dataset.gid === row.dataset.g) setOpen(r.querySelector(".gt"), true, "▸", "▾");
        continue;
      }
      if (d < depth) {
        var tw = r.firstElementChild.querySelector(".tw");
        if (tw && tw.tagName === "BUTTON") { tw.setAttribute("aria-expanded", "true"); tw.textContent = "▾"; }
        if (r.dataset.g) {
          var header = wf.querySelector('.grp[data-gid="' + r.dataset.g + '"] .gt');
          if (header) setOpen(header, true, "▸", "▾");
        }
        depth = d;
      }
    }
    refresh(wf);
  }

  function onWaterfallClick(wf, event) {
    var button = event.target.closest("button");
    if (!button || !wf.contains(button)) return;
    if (button.classList.contains("op")) {
      var detail = document.getElementById(button.getAttribute("aria-controls"));
      var open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", open ? "true" : "false");
      detail.hidden = !open;
    } else if (button.classList.contains("tw")) {
      var expand = button.getAttribute("aria-expanded") === "false";
      button.setAttribute("aria-expanded", expand ? "true" : "false");
      button.textContent = expand ? "▾" : "▸";
      refresh(wf);
    } else if (button.classList.contains("gt")) {
      setOpen(button, button.getAttribute("aria-expanded") !== "true", "▸", "▾");
      refresh(wf);
    }
  }

  function highlight(wf, ids) {
    var previous = wf.querySelectorAll(".sp.hl");
    for (var i = 0; i < previous.length; i++) previous[i].classList.remove("hl");
    var first = null;
    ids.forEach(function (id) {
      var row = document.getElementById("s-" + id);
      if (!row) return;
      if (row.hidden) reveal(wf, row);
      row.classList.add("hl");
      if (!first) first = row;
    });
    if (first) {
      first.scrollIntoView({ block: "center", behavior: "smooth" });
      first.querySelector(".op").focus({ preventScroll: true });
    }
  }

  function copy(button) {
    var text = button.dataset.copy, done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else { fallbackCopy(text); done(); }
  }

  function fallbackCopy(text) {
    var range = document.createRange(), target = document.getElementById("tid");
    range.selectNodeContents(target);
    var selection = window.getSelection();
    selection.removeAllRanges(); selection.addRange(range);
    try { document.execCommand("copy"); } catch (e) { /* the ID stays selected for Ctrl+C */ }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var wf = document.getElementById("wf");
    if (wf) wf.addEventListener("click", function (event) { onWaterfallClick(wf, event); });
    var copyButton = document.getElementById("copy");
    if (copyButton) copyButton.addEventListener("click", function () { copy(copyButton); });
    var findings = document.querySelectorAll(".fd");
    for (var i = 0; i < findings.length; i++) {
      findings[i].addEventListener("click", function (event) {
        var spans = (event.currentTarget.dataset.spans || "").split(" ").filter(Boolean);
        if (wf) highlight(wf, spans);
      });
    }
    document.documentElement.dataset.ready = "1";  // for tests and the bench: handlers are attached
  });
})();
