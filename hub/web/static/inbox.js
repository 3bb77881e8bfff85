// The live inbox. Every ten seconds the page asks the hub which leads arrived in its view since it last
// asked (/leads/poll: new, back, or handed to this user by someone else), puts them on top, counts them in
// the tab's title — "(3) Inbox" — and beeps if the user turned the sound on (remembered in this browser).
// A short poll like calls.js: no connection held open, nothing fetched but from the hub itself (the CSP).
// The hub may send an arrival again (it waits for late commits); the page skips the ones it has, by the
// arrival's id. Also: "all on this page" for a team lead's batch.
(function () {
  "use strict";
  var script = document.currentScript;
  var table = document.getElementById("leads");
  var body = table && table.tBodies[0];

  var all = document.getElementById("select-all");
  if (all) {
    all.parentNode.hidden = false;
    all.addEventListener("change", function () {
      var boxes = document.querySelectorAll('input[name="lead_id"][form="batch"]');
      for (var i = 0; i < boxes.length; i++) { boxes[i].checked = all.checked; }
    });
  }

  var url = script.getAttribute("data-poll");
  if (!url || !body) { return; }
  var cursor = script.getAttribute("data-cursor");
  var interval = parseInt(script.getAttribute("data-interval"), 10) || 10000;
  var arrivedText = script.getAttribute("data-arrived");
  var known = {};
  (script.getAttribute("data-known") || "").split(",").forEach(function (id) { if (id) { known[id] = true; } });
  var title = document.title;
  var unseen = 0, arrived = 0;
  var live = document.getElementById("live");
  var sound = document.getElementById("sound");
  var said = document.getElementById("arrived");
  var SOUND_KEY = "hub.inbox.sound";
  live.hidden = false;
  try { sound.checked = window.localStorage.getItem(SOUND_KEY) === "1"; } catch (e) { /* storage off */ }

  // A short beep made on the spot: no audio file to fetch. Browsers let a page play sound only after the
  // user touched it, so the context is made (or resumed) on the toggle and on the first click.
  var audio = null;
  function audioContext() {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!audio && Context) { audio = new Context(); }
    if (audio && audio.state === "suspended") { audio.resume(); }
    return audio;
  }
  function beep() {
    var ctx = audioContext();
    if (!ctx) { return; }
    var osc = ctx.createOscillator(), gain = ctx.createGain(), t = ctx.currentTime;
    osc.type = "sine";
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.3);
    osc.connect(gain);
    gain.connect(ctx.destination);
    osc.start(t);
    osc.stop(t + 0.35);
  }
  sound.addEventListener("change", function () {
    try { window.localStorage.setItem(SOUND_KEY, sound.checked ? "1" : "0"); } catch (e) { /* storage off */ }
    if (sound.checked) { beep(); }
  });
  document.addEventListener("click", function () { if (sound.checked) { audioContext(); } }, {once: true});

  function showTitle() { document.title = unseen ? "(" + unseen + ") " + title : title; }
  // Back on the tab after a while away: what came meanwhile is seen now (the rows stay marked).
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { unseen = 0; showTitle(); }
  });

  function put(rows) {
    var empty = body.querySelector("tr.empty-row");
    if (empty) { empty.parentNode.removeChild(empty); }
    for (var i = rows.length - 1; i >= 0; i--) {           // latest first: the latest ends on top
      var row = rows[i];
      var old = body.querySelector('tr[data-lead-id="' + row.getAttribute("data-lead-id") + '"]');
      if (old) { old.parentNode.removeChild(old); }
      row.classList.add("fresh");
      body.insertBefore(row, body.firstChild);
    }
    unseen += rows.length;
    arrived += rows.length;
    showTitle();
    said.textContent = arrivedText.replace("{n}", String(arrived));
    if (sound.checked) { beep(); }
  }

  function poll() {
    fetch(url + (url.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(cursor),
          {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        cursor = data.cursor;
        var parsed = document.createElement("template");
        parsed.innerHTML = data.rows;
        var rows = Array.prototype.filter.call(parsed.content.querySelectorAll("tr[data-arrival]"), function (row) {
          var arrival = row.getAttribute("data-arrival");
          if (known[arrival]) { return false; }
          known[arrival] = true;
          return true;
        });
        if (rows.length) { put(rows); }
      })
      .catch(function () { /* signed out, the hub restarts or the network blinks: ask again later */ })
      .finally(function () { setTimeout(poll, interval); });
  }
  setTimeout(poll, interval);
})();
