// ironchart's one script, first-party and optional: every page works without it.
// "/" focuses patient search (unless the user is typing in a field).
document.addEventListener("keydown", function (event) {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) {
    return;
  }
  var target = event.target;
  var tag = target && target.tagName ? target.tagName.toLowerCase() : "";
  if (tag === "input" || tag === "textarea" || tag === "select" || (target && target.isContentEditable)) {
    return;
  }
  var search = document.getElementById("patient-search");
  if (search) {
    event.preventDefault();
    search.focus();
    search.select();
  }
});

// Typeahead: a field with data-lookup="/terminology/<list>" and a <datalist> offers the codes
// that match what is typed (the form works without it: the server offers choices too).
(function () {
  var fields = document.querySelectorAll("input[data-lookup]");
  Array.prototype.forEach.call(fields, function (field) {
    var list = document.getElementById(field.getAttribute("list"));
    if (!list) {
      return;
    }
    var timer = null;
    var asked = "";
    field.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var q = field.value.trim();
        if (q.length < 2 || q === asked) {
          return;
        }
        asked = q;
        fetch(field.getAttribute("data-lookup") + "?q=" + encodeURIComponent(q), {
          credentials: "same-origin",
          headers: { Accept: "application/json" }
        })
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (rows) {
            while (list.firstChild) {
              list.removeChild(list.firstChild);
            }
            rows.forEach(function (row) {
              var option = document.createElement("option");
              // Diagnoses and vaccines are picked by code; drugs by their full name.
              option.value = field.id === "drug" ? row.display : row.code + " " + row.display;
              list.appendChild(option);
            });
          })
          .catch(function () {});
      }, 150);
    });
  });
})();

// Sign-out for inactivity: two minutes before it, say so, so that nobody loses what they are
// typing (the server ends the session regardless; this only warns).
(function () {
  var idle = parseInt(document.body.getAttribute("data-idle-seconds") || "0", 10);
  var warning = document.getElementById("idle-warning");
  if (!idle || !warning) {
    return;
  }
  var lead = Math.min(120, Math.floor(idle / 2));
  setTimeout(function () {
    var at = new Date(Date.now() + lead * 1000);
    warning.textContent = "You will be signed out at " +
      at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) +
      " for inactivity. Save what you are writing now.";
    warning.hidden = false;
  }, (idle - lead) * 1000);
})();

// A refused form: move to the summary of its problems, so that it is read first.
(function () {
  var summary = document.querySelector(".error-summary");
  if (summary) {
    summary.focus();
  }
})();

// A prescription stopped by an allergy alert: bring the alert into view.
(function () {
  var alertBox = document.getElementById("allergy-alert");
  if (alertBox && !document.querySelector(".error-summary")) {
    alertBox.scrollIntoView({ block: "center" });
  }
})();
