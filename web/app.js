// cairn-caddy's reference client. It reads the instance config from the
// JSON block the server put into this page (never from an inline script,
// which the CSP forbids) and asks /xrpc/_health whether the instance is up.
"use strict";

function readConfig() {
  const block = document.getElementById("cairn-config");
  if (!block) return null;
  return JSON.parse(block.textContent);
}

async function showStatus(el) {
  try {
    const res = await fetch("/xrpc/_health", { headers: { Accept: "application/json" }, cache: "no-store" });
    const up = res.ok;
    el.dataset.state = up ? "up" : "down";
    el.textContent = up ? "Online: the server answers." : "Unavailable: the server answered " + res.status + ".";
  } catch (e) {
    el.dataset.state = "down";
    el.textContent = "Unreachable: " + e.message;
  }
}

function main() {
  const cfg = readConfig();
  window.cairnConfig = cfg;
  if (cfg) {
    // textContent, never innerHTML: a config value is text, not markup.
    document.title = cfg.name;
    document.getElementById("instance-name").textContent = cfg.name;
    document.getElementById("title").textContent = cfg.name;
    document.getElementById("domain").textContent = cfg.domain;
    if (cfg.branding && cfg.branding.tagline) {
      document.getElementById("tagline").textContent = cfg.branding.tagline;
    }
  }
  showStatus(document.getElementById("status"));
}

main();
