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
