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
})();
