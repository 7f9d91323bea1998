// An admin's day in a real browser: logs in with the keyboard only, creates a project and
// files two beads through the forms, watches their cards move live when the API changes
// them and reads a run's transcript (pages.mjs takes the screenshots of every page).
import { BASE, PASSWORD, api, assert, launch, run, screenshot, step } from "./lib.mjs";

const ADMIN = process.env.LOOM_ADMIN_USER || "admin";
const MEMBER_TOKEN = process.env.LOOM_MEMBER_TOKEN;
const RUN_BEAD = process.env.LOOM_RUN_BEAD;
// An empty repository made for it: a project is refused a path that is not one.
const REPO = process.env.LOOM_REPO;

const card = (column, id) => `section[data-column="${column}"] li[data-bead="${id}"]`;

await run(async (browsers) => {
  const admin = await launch("admin");
  browsers.push(admin);
  const { page } = admin;

  await step("the login form works with the keyboard alone", page, async () => {
    await page.goto(`${BASE}/login`);
    await screenshot(page, "login");
    const focused = () => page.evaluate(() => document.activeElement?.id);
    assert.equal(await focused(), "username", "the username field has the focus on arrival");
    await page.keyboard.type(ADMIN);
    await page.keyboard.press("Tab");
    assert.equal(await focused(), "password", "Tab goes on to the password");
    await page.keyboard.type(PASSWORD);
    await Promise.all([page.waitForURL(`${BASE}/`), page.keyboard.press("Enter")]);
    await page.locator("header .who", { hasText: ADMIN }).waitFor();
  });

  await step("an admin creates a project through the New project form", page, async () => {
    await page.goto(`${BASE}/projects`);
    const form = page.locator('form[action="/projects"]');
    await form.locator("#p-id").fill("web");
    await form.locator("#p-name").fill("The web app");
    await form.locator("#p-repo").fill(REPO);
    await form.locator("#p-par").fill("3");
    await Promise.all([
      page.waitForURL(`${BASE}/projects/web`),
      form.getByRole("button", { name: "Create project" }).click(),
    ]);
    await page.getByRole("heading", { level: 1, name: /The web app/ }).waitFor();
    assert.match(await page.locator(".page-head").innerText(), /up to 3 runs at once/);
  });

  // Files a bead through the board's form; its card is on the board the page comes back
  // with, and the page's live stream is open again before this returns.
  const file = async (title, fields) => {
    const form = page.locator('form[action="/projects/web/beads"]');
    await form.locator("#b-title").fill(title);
    await form.locator("#b-desc").fill(fields.description);
    await form.locator("#b-prio").selectOption(fields.priority);
    await form.locator("#b-type").selectOption(fields.type);
    await form.locator("#b-labels").fill(fields.labels);
    const streaming = page.waitForResponse((r) => r.url().includes("/api/v1/activity/stream?project=web"));
    await Promise.all([
      page.waitForURL(`${BASE}/projects/web`),
      form.getByRole("button", { name: "File bead" }).click(),
    ]);
    await streaming;
    const id = await page.locator("#board li[data-bead]", { hasText: title }).getAttribute("data-bead");
    assert.match(id, /^web-/, "bead ids start with the project's id");
    return id;
  };
  let first, second;
  await step("two beads filed through the board's form show up as cards", page, async () => {
    first = await file("Set up the landing page", {
      description: "With a **hero** section.", priority: "1", type: "feature", labels: "ui, launch",
    });
    second = await file("Fix the footer links", {
      description: "", priority: "3", type: "bug", labels: "ui",
    });
    await page.locator(card("ready", first)).waitFor();
    await page.locator(card("ready", second)).waitFor();
    assert.match(await page.locator(`li[data-bead="${first}"]`).innerText(), /P1[\s\S]*feature[\s\S]*launch/);
  });

  await step("cards move to another column live when the API changes their beads", page, async () => {
    // A reload would lose this; the live refresh swaps only the board.
    await page.evaluate(() => { window.loomNotReloaded = true; });
    const [blocked] = await api("POST", `/api/v1/beads/${first}/block`, MEMBER_TOKEN,
      { reason: "Which hero image?" });
    assert.equal(blocked, 200);
    await page.locator(card("blocked", first)).waitFor();
    await page.locator(`${card("blocked", first)} .hold`, { hasText: "Which hero image?" }).waitFor();
    const [closed] = await api("POST", `/api/v1/beads/${second}/close`, MEMBER_TOKEN, { reason: "done" });
    assert.equal(closed, 200);
    await page.locator(card("closed", second)).waitFor();
    assert.equal(await page.locator('section[data-column="ready"] li[data-bead]').count(), 0);
    assert.equal(await page.locator('section[data-column="closed"] .count').innerText(), "1");
    assert.equal(await page.evaluate(() => window.loomNotReloaded), true, "the page was not reloaded");
  });

  await step("the overview's counts and the agents page follow changes live", page, async () => {
    const idle = (p) => p.locator("#overview-counts .agent-idle .n").innerText();
    // Resolves once `n` activity streams of the page have answered (the overview opens two:
    // its feed and its counts), so no change can slip in before they listen.
    const opened = (n) => new Promise((resolve) => {
      let seen = 0;
      const on = (r) => {
        if (r.url().endsWith("/api/v1/activity/stream") && ++seen === n) {
          page.off("response", on);
          resolve();
        }
      };
      page.on("response", on);
    });
    const streaming = opened(2);
    await page.goto(`${BASE}/`);
    await streaming;
    const before = Number(await idle(page));
    await page.evaluate(() => { window.loomNotReloaded = true; });
    const [made] = await api("POST", "/api/v1/agents", MEMBER_TOKEN,
      { name: "live-ada", persona: "software-engineer" });
    assert.equal(made, 201);
    await page.locator("#overview-counts .agent-idle .n", { hasText: String(before + 1) }).waitFor();
    assert.equal(await page.evaluate(() => window.loomNotReloaded), true, "the page was not reloaded");
    const listed = opened(1);
    await page.goto(`${BASE}/agents`);
    await listed;
    await api("POST", "/api/v1/agents", MEMBER_TOKEN, { name: "live-bo", persona: "software-engineer" });
    await page.locator("#agents-table", { hasText: "live-bo" }).waitFor();
  });

  await step("a bead's page shows its run turn by turn", page, async () => {
    const open = page.waitForResponse((r) => r.url().includes(`/api/v1/activity/stream?bead=${RUN_BEAD}`));
    await page.goto(`${BASE}/beads/${RUN_BEAD}`);
    await open;
    const steps = page.locator("ol.transcript li.step");
    await steps.first().waitFor({ state: "visible" });
    assert.equal(await steps.count(), 2);
    assert.match(await steps.nth(0).innerText(), /turn 1[\s\S]*read_file[\s\S]*src\/main\.rs/);
    assert.match(await steps.nth(1).innerText(), /turn 2[\s\S]*cargo test[\s\S]*error\[E0425\]/);
    assert.ok(await steps.nth(1).evaluate((li) => li.classList.contains("failed")));
    // Members and admins have the actions a viewer must not.
    await page.locator(`form[action="/beads/${RUN_BEAD}/block"]`).waitFor();
    // Its status follows changes made elsewhere, without a reload.
    const [blocked] = await api("POST", `/api/v1/beads/${RUN_BEAD}/block`, MEMBER_TOKEN,
      { reason: "a live check" });
    assert.equal(blocked, 200);
    await page.locator("#bead-head .status", { hasText: "Blocked" }).waitFor();
    const [reopened] = await api("POST", `/api/v1/beads/${RUN_BEAD}/reopen`, MEMBER_TOKEN, {});
    assert.equal(reopened, 200);
    await page.locator("#bead-head .status", { hasText: "Open" }).waitFor();
  });

  await step("marking notifications read in one tab updates the badge of another", page, async () => {
    await page.goto(`${BASE}/`);
    const badge = "#unread-count";
    const before = Number(await page.locator(badge).innerText());
    assert.ok(before > 0, "the seeded work raised notifications for the admin");
    const other = await admin.context.newPage();
    await other.goto(`${BASE}/notifications`);
    await Promise.all([
      other.waitForURL(/\/notifications/),
      other.locator('form[action="/notifications/read-all"] button').click(),
    ]);
    await page.locator(badge, { hasText: /^0$/ }).waitFor();
    await other.close();
  });
});
