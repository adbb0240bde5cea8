// Figures of the users page against a large installation (docs/web.md, "At 50,000 users"):
// how long each view takes to be ready in headless Chromium, how many bytes the page
// fetched, and how many rows it holds. Not a test: run it against a server you loaded, e.g.
//   userlens all-in-one & userlens demo --traces 150000 --users 50000
//   USERLENS_URL=http://127.0.0.1:8080 USERLENS_API_KEY=ul_… node measure-large.js

import { chromium } from "playwright-core";

const base = process.env.USERLENS_URL ?? "http://127.0.0.1:8080";
const key = process.env.USERLENS_API_KEY;
if (!key) throw new Error("set USERLENS_API_KEY");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
let graphqlBytes = 0;
page.on("response", async (response) => {
  if (response.url().endsWith("/graphql") && response.request().method() === "POST") {
    graphqlBytes += (await response.body()).length;
  }
});
await page.goto(`${base}/`);
await page.evaluate((k) => localStorage.setItem("userlens.apiKey", k), key);

async function timed(what, action, ready) {
  graphqlBytes = 0;
  const started = performance.now();
  await action();
  await page.waitForFunction(ready, null, { timeout: 180_000 });
  const ms = performance.now() - started;
  const rows = await page.locator("[data-testid=users-table] tbody tr").count();
  const total = await page.getByTestId("users-count").textContent();
  console.log(`${what}: ${ms.toFixed(0)} ms, ${(graphqlBytes / 1024).toFixed(1)} KiB of GraphQL, ${rows} rows in the DOM (${total})`);
}

const bothReady = () => document.querySelector("section.overview")?.dataset.state === "ready" &&
  document.querySelector("section.table-panel")?.dataset.state === "ready";
const tableReady = () => document.querySelector("section.table-panel")?.dataset.state === "ready";

await timed("users page, 30 days", () => page.reload(), bothReady);
await timed("users page, 90 days", () => page.locator("button.preset[data-preset='90d']").click(), bothReady);
await timed("sort by cost", () => page.locator("th[data-col=cost] button.sort").click(), tableReady);
await timed("sort by error rate", () => page.locator("th[data-col=errors] button.sort").click(), tableReady);
await timed("search \"user-012\"", async () => {
  await page.getByRole("searchbox", { name: "Search users" }).fill("user-012");
  await page.waitForURL(/q=user-012/);
}, tableReady);
await timed("load more", () => page.getByRole("button", { name: "Load more" }).click(),
  () => document.querySelectorAll("[data-testid=users-table] tbody tr").length > 50 && document.querySelector("section.table-panel").dataset.state === "ready");
const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
console.log(`JS heap used: ${(heap / 1048576).toFixed(1)} MiB`);
await browser.close();
