// Live updates of the summary page: the server sends the re-rendered <main> on every change
// (server-sent events); without JavaScript the page is the same, as of the moment it was loaded.
(function () {
  "use strict";
  var body = document.body;
  if (body.dataset.ended === "true" || !window.EventSource) return;
  var main = document.getElementById("page");
  var source = new EventSource(body.dataset.events);
  source.addEventListener("page", function (e) {
    var follow = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    main.innerHTML = e.data;
    if (follow) window.scrollTo(0, document.body.scrollHeight);
  });
  source.addEventListener("end", function () {
    source.close();
    body.dataset.ended = "true";
  });
})();
