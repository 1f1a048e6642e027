// VitalGate console: refresh the dashboard's health panel every 5 seconds (the pages work without this).
"use strict";
(function () {
  const panel = document.querySelector("[data-refresh]");
  if (!panel) return;
  async function refresh() {
    try {
      const r = await fetch(panel.dataset.refresh, { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { window.location.assign("/login"); return; }
      if (r.ok) panel.innerHTML = await r.text();
    } catch (e) { /* offline for a moment: keep what is shown, try again */ }
  }
  setInterval(refresh, 5000);
})();
