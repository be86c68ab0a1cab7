// The Steward console's only script. Everything works without it; it adds a live
// refresh of the overview and drag-and-drop onto the upload form. It talks to this
// Steward only (the Content-Security-Policy allows nothing else).
"use strict";

(function () {
  function liveRefresh(main) {
    var seconds = parseInt(main.getAttribute("data-refresh"), 10);
    if (!(seconds >= 5)) {
      return;
    }
    function refresh() {
      if (document.hidden) {
        return;
      }
      fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok || response.redirected) {
            throw new Error("status " + response.status);
          }
          return response.text();
        })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
          if (!fresh) {
            return;
          }
          // Keep open <details> open and focus where it was, so a refresh never moves a reader.
          var open = Array.prototype.map.call(main.querySelectorAll("details[open] summary"), function (s) {
            return s.textContent;
          });
          main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
          Array.prototype.forEach.call(main.querySelectorAll("details summary"), function (s) {
            if (open.indexOf(s.textContent) >= 0) {
              s.parentNode.setAttribute("open", "");
            }
          });
          newestInView();
        })
        .catch(function () {
          var said = main.querySelector("[data-refreshed]");
          if (said) {
            said.textContent = "Live refresh paused: reload the page.";
          }
          window.clearInterval(timer);
        });
    }
    var timer = window.setInterval(refresh, seconds * 1000);
  }

  function dropzone(zone) {
    var input = zone.querySelector("input[type=file]");
    if (!input) {
      return;
    }
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () {
        zone.classList.remove("over");
      });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        var help = zone.querySelector(".help");
        if (help) {
          help.textContent = "Chosen: " + input.files[0].name + " (" + input.files[0].size + " bytes)";
        }
      }
    });
  }

  function newestInView() {
    // On a narrow screen a chart scrolls sideways: show its newest (rightmost) bars first.
    Array.prototype.forEach.call(document.querySelectorAll(".chart-scroll"), function (box) {
      box.scrollLeft = box.scrollWidth;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    newestInView();
    var main = document.getElementById("main");
    if (main && main.hasAttribute("data-refresh")) {
      liveRefresh(main);
    }
    Array.prototype.forEach.call(document.querySelectorAll("[data-dropzone]"), dropzone);
  });
})();
