// The served histories index: filter campaign and run rows by the form, keep the filters in the address.
(function () {
  "use strict";
  var FIELDS = ["test", "workload", "verdict", "fault", "since"];
  function el(id) { return document.getElementById(id); }
  function values() {
    var v = {};
    FIELDS.forEach(function (f) { v[f] = (el("f-" + f).value || "").trim(); });
    return v;
  }
  function matches(tr, v, isRun) {
    var d = tr.dataset;
    if (v.test && d.test.toLowerCase().indexOf(v.test.toLowerCase()) < 0) return false;
    if (v.since && !(d.day && d.day >= v.since)) return false;
    if (!isRun) return true;
    if (v.workload && d.workload !== v.workload) return false;
    if (v.verdict && d.verdict !== v.verdict) return false;
    if (v.fault && d.faults.split(" ").indexOf(v.fault) < 0) return false;
    return true;
  }
  function apply() {
    var v = values();
    [["#campaigns tbody tr", "campaigns-shown", false], ["#runs tbody tr", "runs-shown", true]].forEach(function (t) {
      var shown = 0;
      document.querySelectorAll(t[0]).forEach(function (tr) {
        var ok = matches(tr, v, t[2]);
        tr.classList.toggle("hidden", !ok);
        shown += ok ? 1 : 0;
      });
      el(t[1]).textContent = shown;
      if (t[2]) el("no-match").classList.toggle("hidden", shown > 0 || !document.querySelector(t[0]));
    });
    var q = new URLSearchParams();
    FIELDS.forEach(function (f) { if (v[f]) q.set(f, v[f]); });
    var s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : "") + location.hash);
  }
  var given = new URLSearchParams(location.search);
  FIELDS.forEach(function (f) {
    var input = el("f-" + f), want = given.get(f);
    if (want !== null) {
      if (input.tagName === "SELECT" && !Array.prototype.some.call(input.options, function (o) { return o.value === want; })) {
        var o = document.createElement("option");   // a value no listed run has: keep it, show nothing
        o.textContent = want;
        input.appendChild(o);
      }
      input.value = want;
    }
    input.addEventListener("input", apply);
    input.addEventListener("change", apply);
  });
  el("f-clear").addEventListener("click", function () {
    FIELDS.forEach(function (f) { el("f-" + f).value = ""; });
    apply();
  });
  apply();
  document.body.dataset.ready = "1";
})();
