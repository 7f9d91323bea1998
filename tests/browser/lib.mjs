// What the browser scripts share: settings from the environment (tests/api/browser.rs sets
// them), launching Debian's chromium, watching every page for console errors, uncaught
// exceptions and CSP violations, named steps, screenshots and the REST API.
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

export { assert };

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/api/browser.rs`);
  return value;
}

export const BASE = required("LOOM_BASE");
export const PASSWORD = required("LOOM_PASSWORD");
export const SHOTS = required("LOOM_SCREENSHOTS");
const CHROMIUM = process.env.LOOM_CHROMIUM || "/usr/bin/chromium";

export const LAPTOP = { width: 1366, height: 900 };
export const PHONE = { width: 390, height: 844 };
// Generous: a live card move waits on SSE, a fetch and a busy CI machine; never a sleep.
const WAIT_MS = 15_000;

/// A browser of its own (its own profile, so its own cookies) with every page watched.
/// `problems` collects what must not happen; `allow(re)` excuses messages one step expects.
export async function launch(name) {
  const profile = await mkdtemp(join(tmpdir(), `loom-browser-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: LAPTOP,
    args: [
      "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  const problems = [];
  let allowed = [];
  const report = (what) => {
    if (!allowed.some((re) => re.test(what))) problems.push(`[${name}] ${what}`);
  };
  // The page cannot see its own CSP reports from a script it did not load, so the
  // listener goes in through the DevTools protocol (which the policy does not cover).
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
    });
  });
  const watch = (page) => {
    page.on("console", (m) => {
      if (m.type() !== "error") return;
      const from = m.location()?.url;
      report(`console error on ${page.url()}: ${m.text()}${from ? ` (${from})` : ""}`);
    });
    page.on("pageerror", (e) => report(`uncaught exception on ${page.url()}: ${e.message}`));
  };
  context.pages().forEach(watch);
  context.on("page", watch);
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    problems,
    /// Runs `body` with messages matching `patterns` excused.
    async allowing(patterns, body) {
      allowed = patterns;
      try {
        return await body();
      } finally {
        allowed = [];
      }
    },
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

let failures = 0;

/// One named step; a failure is reported with a screenshot of where the page was, and ends
/// the script (later steps build on earlier ones).
export async function step(name, page, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    const shot = join(SHOTS, `FAILED-${name.replace(/[^a-z0-9]+/gi, "-")}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.log(`FAIL ${name} (${Date.now() - started} ms) at ${page.url()}\n     ${e.stack || e}`);
    console.log(`     screenshot: ${shot}`);
    throw new Error(`step "${name}" failed`);
  }
}

/// Ends the script: exit 1 after any failed step or any problem a page reported.
export async function finish(browsers) {
  const problems = browsers.flatMap((b) => b.problems);
  for (const b of browsers) await b.close().catch(() => {});
  for (const p of problems) console.log(`FAIL ${p}`);
  process.exitCode = failures > 0 || problems.length > 0 ? 1 : 0;
}

/// Runs a script's steps, and ends it whatever happens.
export async function run(main) {
  await mkdir(SHOTS, { recursive: true });
  const browsers = [];
  try {
    await main(browsers);
  } catch (e) {
    failures += 1;
    console.log(`stopped: ${e.stack || e}`);
  }
  await finish(browsers);
}

export async function screenshot(page, name) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`     screenshot ${path}`);
}

/// A REST call with a bearer token: [status, parsed body].
export async function api(method, path, token, body) {
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return [res.status, text ? JSON.parse(text) : null];
}

/// Logs in through the login form (a mouse-free fill; the keyboard has its own step).
export async function logIn(page, username) {
  await page.goto(`${BASE}/login`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await Promise.all([
    page.waitForURL(`${BASE}/`),
    page.getByRole("button", { name: "Log in" }).click(),
  ]);
}

/// Whether the page is wider than the window (something sticks out at this width).
export async function overflow(page) {
  return page.evaluate(() => {
    const wide = document.documentElement.scrollWidth - window.innerWidth;
    if (wide <= 0) return null;
    const culprits = [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
      // What scrolls inside its own box (the board, wide tables, charts) is not to blame.
      .filter((el) => {
        for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
          if (getComputedStyle(up).overflowX !== "visible") return false;
        }
        return true;
      })
      .slice(0, 5)
      .map((el) => el.tagName.toLowerCase() + (el.id ? `#${el.id}` : "") +
        (el.getAttribute("class") ? "." + el.getAttribute("class").split(" ").join(".") : ""));
    return { wide, culprits };
  });
}
