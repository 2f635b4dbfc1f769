// Drives the longhaul web console in headless Chromium, as an operator would:
// sign in, start a demo job and watch it finish, run a csv-report over an uploaded file and
// open its result file, cancel a running job, filter the list; keyboard, phone layout,
// screenshots. Usage: node console.mjs BASE_URL TOKEN ARTIFACT_DIR
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";

const [base, token, out] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
page.on("dialog", (d) => d.accept());
const step = (name) => console.log("step:", name);

step("sign in with the keyboard");
await page.goto(base + "/console");
await page.waitForSelector("#token");
assert.equal(await page.evaluate(() => document.activeElement.id), "token", "the token field has focus");
await page.keyboard.type("wrong-token");
await page.keyboard.press("Enter");
await page.waitForFunction(() => document.querySelector("#alert").textContent.includes("refused"));
await page.fill("#token", token);
await page.keyboard.press("Enter");
await page.waitForSelector("table[aria-label='Jobs, newest first']");

async function startJob(type, input, file) {
  await page.click("a[href='#/start']");
  await page.waitForSelector("#s-type");
  await page.selectOption("#s-type", type);
  if (file) await page.setInputFiles("#s-file", file);
  await page.fill("#s-input", JSON.stringify(input));
  await page.click("#start button[type=submit]");
  await page.waitForFunction(() => location.hash.startsWith("#/jobs/") && document.querySelector("#job h2"));
  return page.evaluate(() => location.hash.slice("#/jobs/".length));
}
async function waitStatus(status, timeout = 30000) {
  await page.waitForFunction((s) => document.querySelector("#job .status")?.textContent === s, status, { timeout });
  assert.equal(await page.textContent("#alert"), "", "no error shown");
}

step("start a demo job and watch it finish");
const demo = await startJob("demo", { steps: 2, stepSeconds: 1 });
await page.waitForSelector(".node.running, .node.done");
await waitStatus("SUCCEEDED");
assert.deepEqual(JSON.parse(await page.textContent("#result")).stepsCompleted, 2);
const done = await page.$$eval(".node.done", (n) => n.map((x) => x.dataset.state));
for (const s of ["Register", "Route", "demo.Step", "Complete"]) assert.ok(done.includes(s), `${s} drawn as done: ${done}`);
const notReached = await page.$$eval(".node:not(.done):not(.failed):not(.running)", (n) => n.map((x) => x.dataset.state));
assert.ok(notReached.includes("csv-report.Plan"), "the other branch is drawn as not reached");
assert.ok((await page.textContent("table")).includes("ExecutionSucceeded"), "the history shows the end");
await page.screenshot({ path: `${out}/console-job.png`, fullPage: true });

step("csv-report over an uploaded file; open its result file");
const csv = "region,amount\nnorth,1\nsouth,2\nnorth,3\n";
await startJob("csv-report", { groupBy: ["region"], metrics: [{ op: "count" }] },
  { name: "sales.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
await waitStatus("SUCCEEDED");
const link = await page.getAttribute("#files a:text('report.csv')", "href");
const report = await page.request.get(link);
assert.equal(report.status(), 200);
assert.match(await report.text(), /^region,count\r?\nnorth,2\r?\nsouth,1/);

step("cancel a running job");
await startJob("demo", { steps: 20, stepSeconds: 5 });
await page.waitForSelector("#cancel");
await page.focus("#cancel");
await page.keyboard.press("Enter");
await waitStatus("CANCELLED");

step("the list, filtered");
await page.goto(base + "/console#/jobs");
await page.waitForSelector("tr[data-job]");
assert.equal(await page.$$eval("tr[data-job]", (r) => r.length), 3);
await page.selectOption("#f-status", "CANCELLED");
await page.waitForFunction(() => document.querySelectorAll("tr[data-job]").length === 1);
await page.selectOption("#f-status", "");
await page.selectOption("#f-type", "demo");
await page.waitForFunction(() => document.querySelectorAll("tr[data-job]").length === 2);
await page.screenshot({ path: `${out}/console-jobs.png`, fullPage: true });

step("a phone-sized screen");
await page.setViewportSize({ width: 390, height: 844 });
await page.goto(base + "/console#/jobs/" + demo);
await waitStatus("SUCCEEDED");
const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
assert.ok(overflow <= 1, `no sideways scrolling on a phone (${overflow}px too wide)`);
await page.screenshot({ path: `${out}/console-phone.png`, fullPage: true });

step("sign out forgets the token");
await page.click("#logout");
await page.waitForSelector("#token");
assert.equal(await page.evaluate(() => sessionStorage.getItem("longhaul.token")), null);

assert.deepEqual(errors.filter((e) => !e.includes("401")), [], "no script errors");
await browser.close();
console.log("console test passed");
