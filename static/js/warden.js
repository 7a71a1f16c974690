// Warden's own page behaviour. Loaded from 'self': the Content-Security-Policy allows no
// inline script. Pages work without it; it only makes htmx swaps friendlier.
(function () {
  "use strict";
  // After htmx swaps an answer in, move the focus to its first heading, so keyboard and
  // screen-reader users land on the answer instead of staying on the button they pressed.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    var heading = target && target.querySelector("h1, h2");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  });

  // A secret shown once (a kubeconfig): copy and download buttons, shown only with script.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-needs-script]").forEach(function (el) {
      el.hidden = false;
    });
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.getElementById(button.getAttribute("data-copy"));
        var status = button.parentElement.querySelector("[data-copy-status]");
        var said = function (text) { if (status) { status.textContent = text; } };
        field.select();
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(field.value).then(
            function () { said("Copied."); },
            function () { said("Press Ctrl+C (or Cmd+C) to copy the selected text."); }
          );
        } else {
          said(document.execCommand("copy") ? "Copied." : "Press Ctrl+C (or Cmd+C) to copy the selected text.");
        }
      });
    });
    document.querySelectorAll("[data-download]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.getElementById(button.getAttribute("data-download"));
        var blob = new Blob([field.value], { type: "application/yaml" });
        var link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = button.getAttribute("data-filename") || "kubeconfig";
        document.body.appendChild(link);
        link.click();
        link.remove();
        setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
      });
    });
  });
})();
