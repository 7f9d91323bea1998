// Every page at laptop and phone width, with data on it: none may be wider than the window
// (tables stack or scroll inside their box, forms wrap); the dependency graph has its legend,
// draws ready and waiting beads apart, labels blockers of other projects and never cuts a
// title mid-word. Leaves target/tmp/screenshots/<page>-<width>.png behind for every page.
import { BASE, LAPTOP, PHONE, assert, launch, logIn, overflow, run, screenshot, step } from "./lib.mjs";

const SEED = process.env.LOOM_SEED_PROJECT;
const RUN_BEAD = process.env.LOOM_RUN_BEAD;
const CONVERSATION = process.env.LOOM_CONVERSATION;

const PAGES = [
  ["overview", "/"],
  ["projects", "/projects"],
  ["board", `/projects/${SEED}`],
  ["graph", `/projects/${SEED}/graph`],
  ["bead", `/beads/${RUN_BEAD}`],
  ["chat", `/conversations/${CONVERSATION}`],
  ["analytics", "/analytics"],
  ["analytics-empty", "/analytics?project=ops"],
  ["agents", "/agents"],
  ["personas", "/personas"],
  ["persona", "/personas/software-engineer"],
  ["activity", "/activity"],
  ["notifications", "/notifications"],
  ["users", "/admin/users"],
  ["tokens", "/account/tokens"],
];

/// Visits `path`, fails when the page is wider than the window, and takes its screenshot.
async function visit(page, name, path, width) {
  await page.goto(`${BASE}${path}`);
  const wide = await overflow(page);
  assert.equal(wide, null, `${name} at ${width}px is ${wide?.wide}px too wide: ${wide?.culprits.join(", ")}`);
  await screenshot(page, `${name}-${width}`);
}

await run(async (browsers) => {
  const admin = await launch("pages");
  browsers.push(admin);
  const { page } = admin;

  await step("the login page fits a laptop and a phone", page, async () => {
    for (const size of [LAPTOP, PHONE]) {
      await page.setViewportSize(size);
      await visit(page, "login", "/login", size.width);
    }
    await page.setViewportSize(LAPTOP);
    await logIn(page, process.env.LOOM_ADMIN_USER || "admin");
  });

  for (const size of [LAPTOP, PHONE]) {
    await step(`every page fits ${size.width}px without scrolling sideways`, page, async () => {
      await page.setViewportSize(size);
      for (const [name, path] of PAGES) await visit(page, name, path, size.width);
    });
  }

  await step("the graph has a legend, ready and waiting beads apart, and whole words", page, async () => {
    await page.setViewportSize(LAPTOP);
    await page.goto(`${BASE}/projects/${SEED}/graph`);
    const legend = await page.locator("ul.legend").innerText();
    for (const key of ["ready", "waiting", "another project", "blocks", "child of"]) {
      assert.match(legend, new RegExp(key), `the legend names ${key}`);
    }
    const states = await page.locator("a.graph-node").evaluateAll((nodes) =>
      nodes.map((a) => [a.dataset.state, getComputedStyle(a.querySelector("rect")).stroke]));
    const stroke = (state) => states.find(([s]) => s === state)?.[1];
    assert.ok(stroke("ready") && stroke("waiting"), `ready and waiting beads are drawn: ${states}`);
    assert.notEqual(stroke("ready"), stroke("waiting"), "ready and waiting look different");
    assert.ok(await page.locator("a.graph-node:has(rect.node-external)", { hasText: "in project" }).count() > 0,
      "a blocker of another project is drawn, with its project");
    // Each drawn line of a title is whole words of it, in order, and fits its box.
    const cut = await page.locator("a.graph-node").evaluateAll((nodes) => nodes.flatMap((a) => {
      const words = a.dataset.title.split(/\s+/).filter(Boolean);
      const box = a.querySelector("rect").getBBox();
      const shown = [...a.querySelectorAll("text.node-title tspan")];
      const drawn = shown.map((t) => t.textContent.replace(/…$/, "")).join(" ").split(" ").filter(Boolean);
      const problems = [];
      if (drawn.some((w, i) => w !== words[i])) problems.push(`"${a.dataset.title}" drawn as "${drawn.join(" ")}"`);
      for (const t of shown) {
        const b = t.getBBox();
        if (b.x + b.width > box.x + box.width - 4) problems.push(`"${t.textContent}" sticks out of its box`);
      }
      return problems;
    }));
    assert.deepEqual(cut, [], "no title is cut mid-word or drawn outside its bead");
    assert.ok(await page.locator("a.graph-node").evaluateAll((nodes) =>
      nodes.some((a) => a.querySelectorAll("text.node-title tspan").length > 1)), "long titles wrap");
  });

  await step("the board in dark mode", page, async () => {
    await page.emulateMedia({ colorScheme: "dark" });
    await page.goto(`${BASE}/projects/${SEED}/graph`);
    await screenshot(page, "graph-dark");
    await page.goto(`${BASE}/projects/${SEED}`);
    await screenshot(page, "board-dark");
    await page.emulateMedia({ colorScheme: "light" });
  });
});
