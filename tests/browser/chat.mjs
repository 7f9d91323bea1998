// Pairing in a real browser: a member starts a conversation from a bead's page, sends a
// message with the keyboard, sees the agent's action card and its text stream in before
// the reply ends (then rendered as markdown), stops a slow reply mid-stream, and hands the
// bead back. The scripted gateway's replies are queued by tests/api/browser.rs.
import { BASE, PASSWORD, assert, launch, run, screenshot, step } from "./lib.mjs";

const MEMBER = process.env.LOOM_MEMBER_USER || "member";
const BEAD = process.env.LOOM_RUN_BEAD;

await run(async (browsers) => {
  const member = await launch("member");
  browsers.push(member);
  const { page } = member;

  await step("a member logs in and starts pairing from the bead's page", page, async () => {
    await page.goto(`${BASE}/login?next=/beads/${BEAD}`);
    await page.locator("#username").fill(MEMBER);
    await page.locator("#password").fill(PASSWORD);
    await Promise.all([page.waitForURL(`${BASE}/beads/${BEAD}`), page.keyboard.press("Enter")]);
    await page.locator("#p-persona").selectOption("software-engineer");
    await Promise.all([
      page.waitForURL(/\/conversations\/[0-9a-f-]+$/),
      page.getByRole("button", { name: "Start pairing" }).click(),
    ]);
    await page.getByText("Pairing with").waitFor();
  });

  await step("a message sent with Ctrl+Enter streams the reply in, action first", page, async () => {
    const streaming = page.waitForResponse((r) => r.url().includes("/stream?last_event_id="));
    await page.reload();
    await streaming;
    await page.locator("#chat-body").fill("Please add a notes file");
    await page.locator("#chat-body").press("Control+Enter");
    // The person's message appears at once; then the action's card with its result.
    await page.locator("#chat-messages .msg-user", { hasText: "Please add a notes file" }).waitFor();
    await page.locator("#chat-live .action-card.ok", { hasText: "write_file" }).waitFor();
    // Text arrives piece by piece while the reply is still being written.
    await page.locator("#chat-live .live-text", { hasText: "Streaming" }).waitFor();
    const partial = await page.locator("#chat-live .live-text").innerText();
    assert.ok(!partial.includes("the end."), `only part of the reply yet: ${partial}`);
    await screenshot(page, "chat-streaming");
    // Once it is done, the server's rendering replaces it: markdown, safely.
    const reply = page.locator("#chat-messages .msg-assistant").last();
    await reply.locator("strong", { hasText: "the end." }).waitFor();
    assert.ok(await page.locator("#chat-live").isHidden(), "nothing streams any more");
    assert.equal(await reply.locator(".action-card").count(), 1, "the card stays with its reply");
    assert.equal(await page.locator("#chat-body").inputValue(), "", "the box is cleared");
  });

  await step("a slow reply is stopped mid-stream and keeps what it said", page, async () => {
    await page.locator("#chat-body").fill("Now explain it all, slowly");
    await page.getByRole("button", { name: "Send" }).click();
    await page.locator("#chat-live .live-text", { hasText: "Slowly" }).waitFor();
    await page.getByRole("button", { name: "Stop the reply" }).click();
    const stopped = page.locator("#chat-messages .msg-assistant.state-stopped");
    await stopped.waitFor();
    assert.match(await stopped.innerText(), /Slowly/);
    assert.match(await stopped.innerText(), /stopped/);
    await screenshot(page, "chat-stopped");
  });

  await step("stopping when nothing streams says why, in the page", page, async () => {
    // The refusal is a 409 the browser logs; it is what this step expects.
    await member.allowing([/status of 409/], async () => {
      await page.getByRole("button", { name: "Stop the reply" }).click();
      await page.locator("#chat-error", { hasText: "no reply is streaming" }).waitFor();
    });
  });

  await step("handing the bead back returns it to the agents", page, async () => {
    await Promise.all([
      page.waitForURL(/\/conversations\/[0-9a-f-]+$/),
      page.getByRole("button", { name: "Hand the bead back to the agents" }).click(),
    ]);
    await page.getByText("Handed back").waitFor();
    assert.equal(await page.locator("#chat-form").count(), 0, "no more messages");
    await page.goto(`${BASE}/beads/${BEAD}`);
    await page.getByText("handed back").first().waitFor();
    await screenshot(page, "chat-handed-back");
  });
});
