// protoreg registry browser: the little the pages need a script for. Hand-written, no build
// step, no network but the try-it form's own request. Every page works without it, except
// that the diff picker and the try-it forms need it.
(function () {
  "use strict";

  var html = document.documentElement;
  var siteRoot = new URL(html.getAttribute("data-root") || "./", window.location.href);

  // -- diff picker: go to the precomputed page of the chosen pair --------------------------
  document.querySelectorAll("form.diff-chooser").forEach(function (form) {
    var pairs = JSON.parse(form.getAttribute("data-pairs") || "[]");
    var versions = Array.prototype.map.call(form.elements.from.options, function (o) { return o.value; });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var a = form.elements.from.value, b = form.elements.to.value;
      var note = form.querySelector(".chooser-note");
      if (a === b) { note.textContent = "Pick two different releases."; return; }
      if (versions.indexOf(a) > versions.indexOf(b)) { var t = a; a = b; b = t; }  // older first
      var known = pairs.some(function (p) { return p[0] === a && p[1] === b; });
      if (!known) {
        note.textContent = "Not in this site; run: protoreg diff " + form.getAttribute("data-model") + " " + a + " " + b;
        return;
      }
      window.location.href = new URL(form.getAttribute("data-model") + "/diff/" + a + "_" + b + ".html", siteRoot).href;
    });
  });

  // -- ledger: show only the numbers with a history ----------------------------------------
  var eventful = document.getElementById("ledger-eventful");
  if (eventful) {
    eventful.addEventListener("change", function () {
      document.querySelectorAll("table.ledger").forEach(function (table) {
        table.classList.toggle("only-eventful", eventful.checked);
      });
    });
  }

  // -- try it: build the proto3 JSON body from the inputs, post it with Connect's unary protocol
  function readField(input) {
    var raw = input.value;
    var kind = input.getAttribute("data-kind");
    if (raw.trim() === "") return { skip: true };
    switch (kind) {
      case "number":
        var number = Number(raw);
        if (!isFinite(number)) return { error: "is not a number" };
        return { value: number };
      case "int":
        if (!/^\s*-?\d+\s*$/.test(raw)) return { error: "is not an integer" };
        return { value: Number(raw) };
      case "int64":  // 64-bit integers travel as strings in proto3 JSON, so no digit is lost
        if (!/^\s*-?\d+\s*$/.test(raw)) return { error: "is not an integer" };
        return { value: raw.trim() };
      case "bool":
        return { value: raw === "true" };
      case "json":
        try { return { value: JSON.parse(raw) }; } catch (e) { return { error: "is not valid JSON (" + e.message + ")" }; }
      default:  // string, bytes (base64), enum value names, timestamps, durations
        return { value: raw };
    }
  }

  function buildRequest(form) {
    var whole = form.querySelector("[data-body]");  // a form holding the whole request as JSON
    if (whole) {
      try {
        whole.classList.remove("invalid");
        return { body: JSON.parse(whole.value.trim() || "{}"), errors: [] };
      } catch (e) {
        whole.classList.add("invalid");
        return { body: {}, errors: ["the request is not valid JSON (" + e.message + ")"] };
      }
    }
    var body = {}, errors = [];
    form.querySelectorAll("[data-json-name]").forEach(function (input) {
      var read = readField(input);
      input.classList.toggle("invalid", Boolean(read.error));
      if (read.error) errors.push(input.getAttribute("data-json-name") + " " + read.error);
      else if (!read.skip) body[input.getAttribute("data-json-name")] = read.value;
    });
    return { body: body, errors: errors };
  }

  function endpoint(form) {
    var base = html.getAttribute("data-try-it-base");
    if (base === null) return null;
    if (!/\/$/.test(base)) base += "/";
    return new URL(form.getAttribute("data-path"), new URL(base, siteRoot)).href;
  }

  function shellQuote(text) { return "'" + text.replace(/'/g, "'\\''") + "'"; }

  function preview(form) {
    var built = buildRequest(form);
    var out = form.querySelector(".request-preview");
    if (built.errors.length) { out.textContent = built.errors.join("\n"); out.classList.add("invalid"); return built; }
    out.classList.remove("invalid");
    var url = endpoint(form) || "http://HOST:PORT/" + form.getAttribute("data-path");
    out.textContent = JSON.stringify(built.body, null, 2) + "\n\ncurl -X POST " + shellQuote(url) +
      " -H 'Content-Type: application/json' -d " + shellQuote(JSON.stringify(built.body));
    return built;
  }

  function show(out, status, text) {
    var shown = text;
    try {
      var data = JSON.parse(text);
      shown = JSON.stringify(data, null, 2);
      if (data && typeof data.code === "string" && status !== 200) {
        shown = data.code + ": " + (data.message || "") + "\n\n" + shown;
      }
    } catch (e) { /* not JSON: show as it came */ }
    out.textContent = "HTTP " + status + "\n" + shown;
    out.classList.toggle("error", status !== 200);
  }

  document.querySelectorAll("form.try-it").forEach(function (form) {
    form.addEventListener("input", function () { preview(form); });
    form.addEventListener("change", function () { preview(form); });
    preview(form);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var built = preview(form);
      var url = endpoint(form);
      var out = form.querySelector(".response");
      if (url === null) { out.textContent = "(no server configured)"; return; }
      if (built.errors.length) { out.textContent = "Not sent: " + built.errors.join("; "); return; }
      var headers = { "Content-Type": "application/json", "Connect-Protocol-Version": "1" };
      var token = form.querySelector("input.token");
      if (token && token.value.trim()) headers.Authorization = "Bearer " + token.value.trim();
      out.textContent = "sending…";
      fetch(url, { method: "POST", headers: headers, body: JSON.stringify(built.body) })
        .then(function (response) {
          return response.text().then(function (text) { show(out, response.status, text); });
        })
        .catch(function (error) {
          out.textContent = "Could not reach " + url + ": " + error.message;
          out.classList.add("error");
        });
    });
  });
})();
