// What a browser must not be able to do: a viewer gets no write controls anywhere, and a
// form sent without its CSRF field is refused with nothing changed.
import { BASE, api, assert, launch, logIn, run, screenshot, step } from "./lib.mjs";

const ADMIN = process.env.LOOM_ADMIN_USER || "admin";
const VIEWER = process.env.LOOM_VIEWER_USER || "viewer";
const ADMIN_TOKEN = process.env.LOOM_ADMIN_TOKEN;
const SEED = process.env.LOOM_SEED_PROJECT;
const RUN_BEAD = process.env.LOOM_RUN_BEAD;

/// Every write form a member would see on a page; none may be there for a viewer.
const WRITE_FORMS = [
  'form[action="/projects"]', 'form[action$="/beads"]', 'form[action$="/comment"]',
  'form[action$="/close"]', 'form[action$="/block"]', 'form[action$="/reopen"]',
  'form[action$="/depend"]',
].join(", ");

/// Submits `form` with its hidden csrf field taken out; returns the response to the post.
async function submitWithoutCsrf(page, form) {
  const removed = await form.evaluate((f) => {
    const field = f.querySelector('input[name="csrf"]');
    field?.remove();
    return Boolean(field);
  });
  assert.ok(removed, "the form had a csrf field to remove");
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST" && r.request().isNavigationRequest()),
    form.getByRole("button").click(),
  ]);
  await page.waitForLoadState();
  return response;
}

await run(async (browsers) => {
  const viewer = await launch("viewer");
  browsers.push(viewer);
  const admin = await launch("admin");
  browsers.push(admin);

  await step("a viewer sees the board and the bead but no write controls", viewer.page, async () => {
    const page = viewer.page;
    await logIn(page, VIEWER);
    for (const path of ["/", "/projects", `/projects/${SEED}`, `/beads/${RUN_BEAD}`]) {
      await page.goto(`${BASE}${path}`);
      await page.locator("main h1").waitFor();
      assert.equal(await page.locator(WRITE_FORMS).count(), 0, `no write forms on ${path}`);
    }
    // The same pages do have them for an admin (so the selectors above can match).
    await logIn(admin.page, ADMIN);
    await admin.page.goto(`${BASE}/beads/${RUN_BEAD}`);
    assert.ok(await admin.page.locator(WRITE_FORMS).count() >= 4, "an admin's bead page has forms");
    await page.goto(`${BASE}/projects/${SEED}`);
    assert.ok(await page.locator("#board li[data-bead]").count() > 0, "the viewer sees the cards");
    await screenshot(page, "board-viewer");
  });

  await step("the watch on every page catches a CSP violation when one happens", admin.page, async () => {
    // What makes the silence of the other steps mean something: an inline script, which
    // the policy forbids, is reported both by chromium and by the violation listener.
    const page = admin.page;
    await page.goto(`${BASE}/projects`);
    const said = (re) => page.waitForEvent("console", { predicate: (m) => re.test(m.text()) });
    await admin.allowing([/Content Security Policy/, /CSP violation/], () => Promise.all([
      said(/inline script violates the following Content Security Policy/),
      said(/CSP violation: script-src/),
      page.evaluate(() => {
        const s = document.createElement("script");
        s.textContent = "window.injected = true";
        document.body.append(s);
      }),
    ]));
    assert.equal(await page.evaluate(() => window.injected), undefined, "the script did not run");
  });

  await step("a new project form without its csrf field is refused and creates nothing", admin.page, async () => {
    const page = admin.page;
    await page.goto(`${BASE}/projects`);
    const form = page.locator('form[action="/projects"]');
    await form.locator("#p-id").fill("nocsrf");
    await form.locator("#p-name").fill("Forged");
    await form.locator("#p-repo").fill("/tmp/forged");
    // Chromium logs the refused document load as an error; that one is expected here.
    const response = await admin.allowing([/status of 403/], () => submitWithoutCsrf(page, form));
    assert.equal(response.status(), 403);
    assert.match(await page.locator("main").innerText(), /CSRF/);
    await screenshot(page, "csrf-refused");
    const [status] = await api("GET", "/api/v1/projects/nocsrf", ADMIN_TOKEN);
    assert.equal(status, 404, "no project was created");
  });

  await step("a bead form without its csrf field is refused and files nothing", admin.page, async () => {
    const page = admin.page;
    const count = async () => (await api("GET", `/api/v1/beads?project=${SEED}&limit=500`, ADMIN_TOKEN))[1].items.length;
    const before = await count();
    await page.goto(`${BASE}/projects/${SEED}`);
    const form = page.locator(`form[action="/projects/${SEED}/beads"]`);
    await form.locator("#b-title").fill("Forged bead");
    const response = await admin.allowing([/status of 403/], () => submitWithoutCsrf(page, form));
    assert.equal(response.status(), 403);
    assert.match(await page.locator("main").innerText(), /CSRF/);
    assert.equal(await count(), before, "no bead was filed");
  });
});
