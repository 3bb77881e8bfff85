// Converting and refusing ask first: a dialog says what is about to happen, and "yes" sends the form with
// confirmed=1. The hub changes nothing on an unconfirmed form: without this script it asks on a page.
(function () {
  "use strict";
  var dialog = document.getElementById("confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") { return; }
  var question = document.getElementById("confirm-question");
  var detail = document.getElementById("confirm-detail");
  var yes = document.getElementById("confirm-yes");
  var no = document.getElementById("confirm-no");
  var pending = null;

  function detailOf(form) {
    var source = form.querySelector("[data-detail-source]");
    if (!source) { return ""; }
    var value = source.tagName === "SELECT"
      ? (source.selectedIndex >= 0 ? source.options[source.selectedIndex].text : "")
      : source.value.trim();
    return value ? form.getAttribute("data-detail") + ": " + value : "";
  }

  ["convert-form", "refuse-form"].forEach(function (id) {
    var form = document.getElementById(id);
    if (!form) { return; }
    form.addEventListener("submit", function (event) {
      event.preventDefault();                 // the browser checked the form's fields already
      pending = form;
      question.textContent = form.getAttribute("data-confirm");
      detail.textContent = detailOf(form);
      yes.textContent = form.getAttribute("data-confirm-yes");
      yes.className = form.querySelector("button[type=submit]").className;
      dialog.showModal();
      no.focus();
    });
  });
  no.addEventListener("click", function () { pending = null; dialog.close(); });
  dialog.addEventListener("close", function () { pending = null; });
  yes.addEventListener("click", function () {
    var form = pending;
    dialog.close();
    if (!form) { return; }
    var confirmed = document.createElement("input");
    confirmed.type = "hidden";
    confirmed.name = "confirmed";
    confirmed.value = "1";
    form.appendChild(confirmed);
    form.submit();                            // submit() sends without firing "submit" again
  });
})();
