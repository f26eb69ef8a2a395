/* Starts Swagger UI on /api/docs (an external file: the page's CSP allows no inline script).
 * validatorUrl: null keeps Swagger UI from asking an outside validator about our schema. */
(function () {
  "use strict";
  var node = document.getElementById("swagger-ui");
  if (!node || !window.SwaggerUIBundle) { return; }
  window.SwaggerUIBundle({
    url: node.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true
  });
})();
