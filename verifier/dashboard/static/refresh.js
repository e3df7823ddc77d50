// Reloads the page every 15 seconds while the box is ticked. The choice
// is kept in localStorage, so it applies across pages.
(function () {
  "use strict";
  var key = "vouch-auto-refresh";
  var box = document.getElementById("auto-refresh");
  if (!box) {
    return;
  }
  var timer = null;
  function apply() {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (box.checked) {
      timer = setTimeout(function () { location.reload(); }, 15000);
    }
  }
  box.checked = localStorage.getItem(key) !== "off";
  box.addEventListener("change", function () {
    localStorage.setItem(key, box.checked ? "on" : "off");
    apply();
  });
  apply();
})();
