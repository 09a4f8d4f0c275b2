// Drives Debian's Chromium (through playwright-core) over the pages of a
// running cairn-caddy and prints what it saw as one JSON object; the Go test
// (caddymodules/web_browser_test.go) decides what is right.
//
//   node pages.mjs '{"base":"https://127.0.0.1:P","bundleBase":"https://127.0.0.1:Q","out":"/dir","userAgents":{"windows":"…"}}'
//
// For every page it records CSP violations (the securitypolicyviolation
// event and Chromium's console report), console errors, uncaught
// exceptions and dialogs (an alert() that ran would show here).
import { chromium } from "playwright-core";
import jsQR from "jsqr";
import { PNG } from "pngjs";
import path from "node:path";
import fs from "node:fs";

const opts = JSON.parse(process.argv[2]);
const executablePath = process.env.CAIRN_CHROMIUM || "/usr/bin/chromium";
const userDataDir = fs.mkdtempSync(path.join(opts.out, "chromium-profile-"));

// launchPersistentContext is the only way to pass a fresh
// --user-data-dir; one browser serves every page.
const phone = { width: 412, height: 915 };
const browser = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  ignoreHTTPSErrors: true, // Caddy's internal CA, not installed
  viewport: phone,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

// Record CSP violations in every page before any of its scripts run. The
// listener is added by the DevTools protocol, which the CSP does not govern.
await browser.addInitScript(() => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
  });
});

async function visit(url, { screenshot, userAgent, then } = {}) {
  let page = await browser.newPage();
  if (userAgent) {
    await page.setExtraHTTPHeaders({ "User-Agent": userAgent });
  }
  const seen = { url, consoleErrors: [], pageErrors: [], dialogs: [], failedRequests: [] };
  page.on("console", (m) => { if (m.type() === "error") seen.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => seen.pageErrors.push(String(e)));
  page.on("dialog", async (d) => { seen.dialogs.push(d.message()); await d.dismiss(); });
  page.on("requestfailed", (r) => seen.failedRequests.push(`${r.url()} ${r.failure()?.errorText}`));
  const resp = await page.goto(url, { waitUntil: "load" });
  seen.status = resp.status();
  seen.contentType = resp.headers()["content-type"];
  if (then) Object.assign(seen, await then(page));
  seen.cspViolations = await page.evaluate(() => window.__csp);
  if (screenshot) {
    const file = path.join(opts.out, screenshot);
    await page.screenshot({ path: file, fullPage: true });
    seen.screenshot = file;
  }
  await page.close();
  return seen;
}

const result = {};

// The landing page: the reference client, with the injected config.
result.landing = await visit(opts.base + "/", {
  screenshot: "landing.png",
  then: async (page) => {
    // Locators, not waitForFunction: the CSP forbids the eval it uses.
    await page.locator('#status:not([data-state="checking"])').waitFor();
    // Keyboard: the first Tab lands on the skip link, which shows itself.
    await page.keyboard.press("Tab");
    const firstTab = await page.evaluate(() => {
      const el = document.activeElement;
      const box = el.getBoundingClientRect();
      return { text: el.textContent, visible: box.left >= 0 && box.top >= 0 && box.width > 0 };
    });
    return { firstTab, ...await page.evaluate(() => ({
      configBlock: JSON.parse(document.getElementById("cairn-config").textContent),
      appConfig: window.cairnConfig,
      heading: document.querySelector("h1").textContent,
      health: document.getElementById("status").dataset.state,
      links: [...document.querySelectorAll("main a")].map((a) => a.getAttribute("href")),
      scripts: document.scripts.length,
      lang: document.documentElement.lang,
    })) };
  },
});

// /connect: decode the QR code from a screenshot of it.
result.connect = await visit(opts.base + "/connect", {
  screenshot: "connect.png",
  then: async (page) => {
    const png = PNG.sync.read(await page.locator("#qr").screenshot());
    const code = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
    return {
      qr: code ? code.data : null,
      serviceURL: await page.locator("#service-url").textContent(),
      serviceDID: await page.locator("#service-did").textContent(),
      heading: await page.locator("h1").textContent(),
      scripts: await page.evaluate(() => document.scripts.length),
    };
  },
});

// /download, once per user agent: which OS section is open and first.
result.download = {};
for (const [os, ua] of Object.entries(opts.userAgents)) {
  result.download[os] = await visit(opts.base + "/download", {
    userAgent: ua,
    screenshot: `download-${os}.png`,
    then: async (page) => await page.evaluate(() => ({
      open: [...document.querySelectorAll("details.os[open]")].map((d) => d.dataset.os),
      first: document.querySelector("details.os")?.dataset.os,
      sums: [...document.querySelectorAll("code.sum")].map((c) => c.textContent),
      commands: [...document.querySelectorAll("pre code")].map((c) => c.textContent),
    })),
  });
}

// A client bundle from a directory: a deep client route gets the app,
// whose hashed script runs and reads the config.
result.deepLink = await visit(opts.bundleBase + "/some/deep/link", {
  screenshot: "bundle-deep-link.png",
  then: async (page) => {
    await page.locator('body[data-ready="1"]').waitFor();
    return await page.evaluate(() => ({
      route: document.getElementById("route").textContent,
      name: document.getElementById("name").textContent,
    }));
  },
});

await browser.close();
fs.rmSync(userDataDir, { recursive: true, force: true });
process.stdout.write(JSON.stringify(result) + "\n");
