/* The template editor's live preview. A pause in typing posts the draft (the whole form, with
   its CSRF token) for the rendered subject and text and the problems at their lines, and submits
   the form into the sandboxed preview frame for the HTML. No dependencies. */
"use strict";
(function () {
  var panel = document.getElementById("template-preview");
  if (!panel || !panel.getAttribute("data-preview-url")) { return; }
  var form = panel.closest("form");
  var button = document.getElementById("preview-button");
  var status = document.getElementById("preview-status");
  var timer = null;
  var sequence = 0;
  var WATCHED = ["id_subject", "id_html_body", "id_text_body", "id_layout_template", "id_server",
                 "id_template_type", "preview-model", "preview-inline-css"];

  function byId(id) { return document.getElementById(id); }

  function csrfToken() {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function selectLine(fieldName, line) {
    var area = byId("id_" + fieldName);
    if (!area || !line) { if (area) { area.focus(); } return; }
    var lines = area.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) { start += lines[i].length + 1; }
    area.focus();
    area.setSelectionRange(start, start + (lines[line - 1] || "").length);
    if (area.scrollHeight > area.clientHeight) {
      area.scrollTop = Math.max(0, (line - 3) * (area.scrollHeight / Math.max(lines.length, 1)));
    }
  }

  function showProblems(problems) {
    var list = byId("preview-problems");
    list.textContent = "";
    list.hidden = problems.length === 0;
    problems.forEach(function (problem) {
      var item = document.createElement("li");
      item.className = "pm-problem";
      var where = document.createElement("button");
      where.type = "button";
      where.className = "pm-problem-where";
      where.setAttribute("data-field", problem.field);
      where.setAttribute("data-line", problem.line || "");
      where.textContent = problem.where;
      var message = document.createElement("span");
      message.className = "pm-problem-message";
      message.textContent = " " + problem.message;
      item.appendChild(where);
      item.appendChild(message);
      if (problem.marker) {
        var excerpt = document.createElement("pre");
        excerpt.className = "pm-excerpt";
        excerpt.textContent = problem.excerpt + "\n" + problem.marker;
        item.appendChild(excerpt);
      }
      list.appendChild(item);
    });
  }

  function refresh() {
    var mine = ++sequence;
    status.textContent = "Rendering…";
    fetch(panel.getAttribute("data-preview-url"), {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" },
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (data) {
      if (mine !== sequence) { return; }
      byId("preview-subject").textContent = data.subject || "";
      byId("preview-text").textContent = data.text || "";
      if (data.suggested_model) {
        byId("preview-suggested").textContent = JSON.stringify(data.suggested_model, null, 2);
      }
      showProblems(data.problems);
      status.textContent = data.valid ? "Up to date." :
        data.problems.length + (data.problems.length === 1 ? " problem." : " problems.");
    }).catch(function (error) {
      if (mine === sequence) { status.textContent = "The preview failed: " + error.message; }
    });
    if (form.requestSubmit) { form.requestSubmit(button); } else { button.click(); }
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 400);
  }

  WATCHED.forEach(function (id) {
    var node = byId(id);
    if (node) {
      node.addEventListener("input", later);
      node.addEventListener("change", later);
    }
  });
  document.addEventListener("click", function (event) {
    var where = event.target.closest(".pm-problem-where");
    if (where) { selectLine(where.getAttribute("data-field"), +where.getAttribute("data-line")); }
  });
  button.addEventListener("click", function (event) {
    event.preventDefault();
    refresh();
  });
  byId("use-suggested").addEventListener("click", function () {
    byId("preview-model").value = byId("preview-suggested").textContent;
    refresh();
  });
  if (panel.getAttribute("data-stale") || !byId("preview-html").getAttribute("src") ||
      byId("preview-html").getAttribute("src") === "about:blank") {
    refresh();
  }
})();
