// The screen-pop: a manager's open page asks the hub twice a second whether a known client is calling,
// and shows who, with a link to the lead card. A short poll, not a held connection: it works behind any
// proxy and costs the server nothing between calls.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script.getAttribute("data-poll");
  var box = document.getElementById("call-alert");
  var last = -1;
  function show(alert) {
    box.textContent = "";
    var text = document.createElement(alert.url ? "a" : "span");
    text.textContent = "\u260E " + alert.text + " (" + alert.caller + ")";
    if (alert.url) { text.href = alert.url; }
    box.appendChild(text);
    box.setAttribute("data-lead-id", alert.lead_id || "");
    box.hidden = false;
  }
  function poll() {
    fetch(url + "?after=" + last, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data) {
          last = data.last;
          if (data.alerts.length) { show(data.alerts[data.alerts.length - 1]); }
        }
      })
      .catch(function () { /* the hub restarts or the network blinks: ask again in a moment */ })
      .finally(function () { setTimeout(poll, 500); });
  }
  poll();
})();
