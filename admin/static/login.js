/* Login: check the token against the API once, then keep it in sessionStorage for this tab. */
"use strict";
(() => {
  const IS = window.imgserve;
  const params = new URLSearchParams(location.search);
  const next = (params.get("next") || "").startsWith("/ui/") ? params.get("next") : "/ui/models";
  const error = IS.$("#login-error");

  IS.ready(async () => {
    const health = await IS.health();
    if (health.auth === false) IS.show(IS.$("#no-token-note"));
    if (params.get("reason") === "expired") IS.setError(error, new Error("The token was refused; sign in again."));

    IS.$("#login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const token = IS.$("#token").value.trim();
      if (!token && health.auth !== false) return IS.setError(error, new Error("Enter the admin token."));
      IS.$("#login-submit").disabled = true;
      try {
        const r = await fetch("/models", { headers: token ? { Authorization: "Bearer " + token } : {} });
        if (r.status === 401) throw new Error("That token was not accepted.");
        if (!r.ok) throw new Error(`The admin runner answered HTTP ${r.status}.`);
        if (token) IS.setToken(token); else IS.clearToken();
        location.replace(next);
      } catch (err) {
        IS.setError(error, err);
      } finally {
        IS.$("#login-submit").disabled = false;
      }
    });
  });
})();
