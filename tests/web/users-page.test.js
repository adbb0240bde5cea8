// Browser tests of the users page: headless Chromium (Debian's /usr/bin/chromium) driven by
// Playwright against a real `target/debug/userlens all-in-one` on ephemeral ports, with a
// fresh SQLite database loaded through OTLP by `userlens demo` with a fixed seed. Each check
// compares what the page shows with the GraphQL API's own answer to the same question.
//
// Run: cargo build -p userlens --bin userlens && (cd tests/web && npm ci && npm test)

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BINARY = process.env.USERLENS_BINARY ?? join(ROOT, "target/debug/userlens");
const SCREENSHOTS = join(ROOT, "target/web-screenshots");
const QUERIES = join(ROOT, "web/queries");
const TRACES = 1500;
const USERS = 150;
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const LAPTOP = { width: 1366, height: 768 };
const PHONE = { width: 390, height: 844 };

const children = [];
let workDir;
let base;
let otlpHttpAddr;
let key;
let browser;
let page;
const pageErrors = [];

// ---------------------------------------------------------------------------------------
// The server

function start(args, env) {
  const child = spawn(BINARY, args, {
    env: { ...process.env, RUST_LOG: "info", NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const lines = { stdout: [], stderr: [] };
  const waiters = [];
  for (const stream of ["stdout", "stderr"]) {
    let pending = "";
    child[stream].setEncoding("utf8");
    child[stream].on("data", (chunk) => {
      pending += chunk;
      const parts = pending.split("\n");
      pending = parts.pop();
      for (const line of parts) {
        // The log may be coloured: strip ANSI escapes before matching.
        lines[stream].push(line.replace(/\x1b\[[0-9;]*m/g, ""));
        for (const waiter of [...waiters]) waiter();
      }
    });
  }
  const exited = new Promise((resolveExit) => child.on("exit", (code) => {
    for (const waiter of [...waiters]) waiter();
    resolveExit(code);
  }));
  // Resolves with the first match of `pattern` in `stream`.
  function waitFor(stream, pattern, what, ms = 60_000) {
    return new Promise((resolveMatch, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms:\n${lines.stderr.slice(-20).join("\n")}`)), ms);
      const check = () => {
        for (const line of lines[stream]) {
          const match = line.match(pattern);
          if (match) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(check), 1);
            resolveMatch(match);
            return;
          }
        }
        if (child.exitCode !== null) {
          clearTimeout(timer);
          reject(new Error(`userlens ${args[0]} exited (${child.exitCode}) before ${what}:\n${lines.stderr.slice(-20).join("\n")}`));
        }
      };
      waiters.push(check);
      check();
    });
  }
  return { child, lines, waitFor, exited };
}

function closedPort() {
  return new Promise((resolvePort) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

const ephemeral = {
  USERLENS_OTLP_GRPC_ADDR: "127.0.0.1:0",
  USERLENS_OTLP_HTTP_ADDR: "127.0.0.1:0",
  USERLENS_QUERY_ADDR: "127.0.0.1:0",
  USERLENS_GRAPHQL_ADDR: "127.0.0.1:0",
};

// ---------------------------------------------------------------------------------------
// The API's own answers

async function api(name, variables, apiKey = key, at = base) {
  const query = readFileSync(join(QUERIES, `${name}.graphql`), "utf8");
  const response = await fetch(`${at}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

// The page's display formats (web/format.js), restated so a change to either is noticed.
const integer = (n) => new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 }).format(n);
const decimal = (n) => new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n);
const percent = (share) => `${(share * 100).toFixed(1)}%`;
function cost(usd) {
  if (usd === 0) return "$0.00";
  if (Math.abs(usd) < 0.01) return `$${usd.toFixed(4)}`;
  return `$${decimal(usd)}`;
}

async function pageRange() {
  const label = page.getByTestId("range-label");
  return { from: await label.getAttribute("data-from"), to: await label.getAttribute("data-to") };
}

async function ready(selector) {
  await page.waitForSelector(`${selector}[data-state=ready]`);
}

async function usersPageReady() {
  await ready("section.overview");
  await ready("section.table-panel");
}

async function shownUserIds() {
  return page.$$eval("[data-testid=users-table] tbody tr", (rows) => rows.map((row) => row.dataset.userId));
}

async function usersFromApi(variables) {
  const data = await api("users", { first: 50, trendBuckets: 14, ...variables, range: await pageRange() });
  return data.users;
}

// `fullPage: false` keeps the first screen only, as a person first sees it.
async function screenshot(name, fullPage = true) {
  if (!fullPage) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage });
}

// Two weeks of January 2010, far from the demo data, whose figures are counted by hand:
//
// | trace | day    | user | session |     | trace | day    | user | session |
// |-------|--------|------|---------|     |-------|--------|------|---------|
// | A     | 01-02  | p1   | s1      |     | E     | 01-09  | p1   | s4      |
// | B     | 01-03  | p2   | s2      |     | F     | 01-10  | n1   | s5      |
// | C     | 01-04  | –    | sA      |     | G     | 01-11  | n2   | s6      |
// | D     | 01-05  | p1   | s3      |     | H     | 01-12  | n2   | s6      |
//                                          | I     | 01-13  | n3   | s7      |
//                                          | J     | 01-14  | –    | sB      |
//
// Week [01-01, 01-08): 2 users (both new), 4 traces, 3 with a user (share 0.75), 1.5 traces
// and 1.5 sessions per user. Week [01-08, 01-15): 4 users (3 new, p1 returning), 6 traces,
// 5 with a user (share 5/6), 1.25 traces and 1.0 sessions per user.
const KNOWN_WEEK = { from: "2010-01-08T00:00:00Z", to: "2010-01-15T00:00:00Z" };
const KNOWN_FIRST_WEEK = { from: "2010-01-01T00:00:00Z", to: "2010-01-08T00:00:00Z" };
const KNOWN_TRACES = [
  [2, "p1", "s1"], [3, "p2", "s2"], [4, null, "sA"], [5, "p1", "s3"],
  [9, "p1", "s4"], [10, "n1", "s5"], [11, "n2", "s6"], [12, "n2", "s6"], [13, "n3", "s7"], [14, null, "sB"],
];

async function sendKnownWeeks() {
  const spans = KNOWN_TRACES.map(([day, user, session], i) => {
    const start = BigInt(Date.UTC(2010, 0, day, 10)) * 1_000_000n;
    const attributes = [{ key: "session.id", value: { stringValue: session } }];
    if (user) attributes.push({ key: "user.id", value: { stringValue: user } });
    return {
      traceId: (0xa000 + i).toString(16).padStart(32, "0"),
      spanId: (i + 1).toString(16).padStart(16, "0"),
      name: "chat",
      startTimeUnixNano: String(start),
      endTimeUnixNano: String(start + 1_000_000n),
      attributes,
    };
  });
  const response = await fetch(`http://${otlpHttpAddr}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ spans }] }] }),
  });
  assert.equal(response.status, 200, await response.text());
  const both = { from: KNOWN_FIRST_WEEK.from, to: KNOWN_WEEK.to };
  for (let attempt = 0; ; attempt++) {
    const { usersOverview } = await api("overview", { range: both });
    if (usersOverview.traces === KNOWN_TRACES.length) break;
    assert.ok(attempt < 120, `only ${usersOverview.traces} of ${KNOWN_TRACES.length} known traces visible`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

// The change a card shows (web/users.js), restated: whole percent with a sign, "new" when
// the previous figure is 0.
function change(current, previous) {
  if (previous === 0) return current === 0 ? "0 %" : "new";
  const points = Math.round(((current - previous) / previous) * 100);
  if (points === 0) return "0 %";
  return `${points > 0 ? "+" : "\u2212"}${integer(Math.abs(points))} %`;
}

async function shownChanges() {
  return page.$$eval(".card[data-metric]", (cards) => Object.fromEntries(cards.map((card) =>
    [card.dataset.metric, card.querySelector("[data-testid=card-change]")?.textContent ?? null])));
}

// ---------------------------------------------------------------------------------------

before(async () => {
  workDir = mkdtempSync(join(tmpdir(), "userlens-web-"));
  mkdirSync(SCREENSHOTS, { recursive: true });
  const server = start(["all-in-one"], {
    ...ephemeral,
    USERLENS_DATABASE_URL: `sqlite://${join(workDir, "userlens.db")}`,
    USERLENS_KEY_FILE: join(workDir, "api-key"),
  });
  [, key] = await server.waitFor("stdout", /API key \(project default\): (\S+)/, "the API key");
  const [, graphqlAddr] = await server.waitFor("stdout", /GraphiQL: http:\/\/(\S+)\/graphql/, "the gateway address");
  const [, grpcAddr] = await server.waitFor("stderr", /listener="?otlp-grpc"? addr=(\S+)/, "the OTLP/gRPC address");
  [, otlpHttpAddr] = await server.waitFor("stderr", /listener="?otlp-http"? addr=(\S+)/, "the OTLP/HTTP address");
  base = `http://${graphqlAddr}`;

  const demo = start(["demo", "--traces", String(TRACES), "--users", String(USERS), "--days", "30", "--seed", "7",
    "--endpoint", `http://${grpcAddr}`, "--key-file", join(workDir, "api-key")], {});
  assert.equal(await demo.exited, 0, demo.lines.stderr.join("\n"));

  // Accepted traces are committed by the ingest writers; wait until every one is visible.
  const wide = { from: new Date(Date.now() - 400 * 86400_000).toISOString(), to: new Date(Date.now() + 86400_000).toISOString() };
  for (let attempt = 0; ; attempt++) {
    const { usersOverview } = await api("overview", { range: wide });
    if (usersOverview.traces === TRACES) break;
    assert.ok(attempt < 120, `only ${usersOverview.traces} of ${TRACES} traces visible`);
    await new Promise((r) => setTimeout(r, 500));
  }

  await sendKnownWeeks();

  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: LAPTOP });
  page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !/401 \(Unauthorized\)/.test(message.text())) pageErrors.push(`console: ${message.text()}`);
  });
});

after(async () => {
  await browser?.close();
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
  await Promise.all(children.map((child) => child.exitCode === null ? new Promise((r) => child.on("exit", r)) : null));
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

test("the key is asked once, kept in localStorage and never put in the URL", async () => {
  await page.goto(`${base}/`);
  await page.getByTestId("key-prompt").waitFor();
  await page.getByTestId("key-input").fill(key);
  await page.getByRole("button", { name: "Save key" }).click();
  await usersPageReady();
  assert.equal(await page.evaluate(() => localStorage.getItem("userlens.apiKey")), key);
  assert.ok(!page.url().includes(key));
  await page.reload();
  await usersPageReady();
  assert.equal(await page.getByTestId("key-prompt").count(), 0);
});

test("the overview cards show the API's figures for the selected range", async () => {
  const { usersOverview: o } = await api("overview", { range: await pageRange() });
  assert.ok(o.uniqueUsers > 0);
  const expected = {
    uniqueUsers: integer(o.uniqueUsers),
    newUsers: integer(o.newUsers),
    userTraceShare: percent(o.userTraceShare),
    tracesPerUser: decimal(o.tracesPerUser),
    sessionsPerUser: decimal(o.sessionsPerUser),
  };
  for (const [metric, text] of Object.entries(expected)) {
    const shown = await page.locator(`.card[data-metric=${metric}] .card-value`).textContent();
    assert.equal(shown, text, metric);
  }
  // One bar per bucket of the API's histogram: uPlot's data length.
  assert.ok(await page.locator("[data-testid=histogram] canvas").count() >= 1);
  await screenshot("users-page-laptop", false);
});

test("each card shows its change against the previous period of a hand-counted week", async () => {
  // The API's previous period holds the figures counted by hand above.
  const { usersOverview: o } = await api("overview", { range: KNOWN_WEEK });
  assert.deepEqual(
    [o.uniqueUsers, o.newUsers, o.returningUsers, o.traces, o.tracesWithUser, o.tracesPerUser, o.sessionsPerUser],
    [4, 3, 1, 6, 5, 1.25, 1]);
  const p = o.previousPeriod;
  assert.deepEqual([p.from, p.to], ["2010-01-01T00:00:00.000Z", "2010-01-08T00:00:00.000Z"]);
  assert.deepEqual([p.uniqueUsers, p.newUsers, p.userTraceShare, p.tracesPerUser, p.sessionsPerUser], [2, 2, 0.75, 1.5, 1.5]);

  await page.goto(`${base}/?from=${KNOWN_WEEK.from}&to=${KNOWN_WEEK.to}`);
  await usersPageReady();
  const suffix = " vs previous period";
  assert.deepEqual(await shownChanges(), {
    uniqueUsers: `+100 %${suffix}`, // 4 vs 2
    newUsers: `+50 %${suffix}`, // 3 vs 2
    userTraceShare: `+11 %${suffix}`, // 5/6 vs 3/4
    tracesPerUser: `\u221217 %${suffix}`, // 1.25 vs 1.5
    sessionsPerUser: `\u221233 %${suffix}`, // 1.0 vs 1.5
  });
  assert.equal(await page.locator(".card[data-metric=uniqueUsers] [data-testid=card-change]").getAttribute("class"), "card-change up");
  assert.equal(await page.locator(".card[data-metric=tracesPerUser] [data-testid=card-change]").getAttribute("class"), "card-change down");
  assert.match(await page.locator(".card[data-metric=uniqueUsers] [data-testid=card-change]").getAttribute("title"), /: 2$/);

  // The week before had no traces: every figure is new.
  await page.goto(`${base}/?from=${KNOWN_FIRST_WEEK.from}&to=${KNOWN_FIRST_WEEK.to}`);
  await usersPageReady();
  const changes = await shownChanges();
  for (const metric of Object.keys(changes)) assert.equal(changes[metric], `new${suffix}`, metric);
  assert.equal(await page.locator(".card[data-metric=newUsers] [data-testid=card-change]").getAttribute("class"), "card-change new");

  // The demo data's range: the change of each card is the arithmetic on the API's figures.
  await page.goto(`${base}/`);
  await usersPageReady();
  const { usersOverview: demo } = await api("overview", { range: await pageRange() });
  const shown = await shownChanges();
  for (const metric of Object.keys(shown)) {
    assert.equal(shown[metric], `${change(demo[metric], demo.previousPeriod[metric])}${suffix}`, metric);
  }
});

test("the first page of the table is the API's first page, newest activity first", async () => {
  const users = await usersFromApi({});
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));
  assert.equal(await page.getByTestId("users-count").textContent(), `${users.nodes.length} of ${integer(users.totalCount)} users`);
  const first = users.nodes[0];
  const row = page.locator(`tr[data-user-id="${first.userId}"]`);
  assert.equal(await row.locator("td[data-col=sessions]").textContent(), integer(first.sessions));
  assert.equal(await row.locator("td[data-col=errors] .error-rate").textContent(), percent(first.errorRate));
  assert.equal(await row.locator("td[data-col=cost]").textContent(), cost(first.cost.sum));
  assert.equal(await row.locator("td[data-col=user] .email").textContent(), first.email);
});

test("sorting by cost sorts on the server, and the rollup cycles SUM / AVG / MED", async () => {
  await page.locator("th[data-col=cost] button.sort").click();
  await page.waitForURL(/sort=COST_SUM&dir=DESC/);
  await ready("section.table-panel");
  let users = await usersFromApi({ orderBy: { field: "COST_SUM", direction: "DESC" } });
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));
  assert.equal(await page.getByTestId("cost-rollup").textContent(), `SUM ${cost(users.costRollup.sum)}`);
  const costs = await page.$$eval("[data-testid=users-table] tbody td[data-col=cost]", (cells) => cells.map((c) => c.textContent));
  assert.deepEqual(costs, users.nodes.map((n) => cost(n.cost.sum)));

  await page.locator("th[data-col=cost] button.sort").click();
  await page.waitForURL(/sort=COST_SUM&dir=ASC/);
  await ready("section.table-panel");
  users = await usersFromApi({ orderBy: { field: "COST_SUM", direction: "ASC" } });
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));

  await page.getByTestId("cost-rollup").click();
  await page.waitForURL(/sort=COST_AVERAGE&dir=ASC/);
  await ready("section.table-panel");
  users = await usersFromApi({ orderBy: { field: "COST_AVERAGE", direction: "ASC" } });
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));
  assert.equal(await page.getByTestId("cost-rollup").textContent(), `AVG ${cost(users.costRollup.average)}`);

  await page.getByTestId("cost-rollup").click();
  await page.waitForURL(/sort=COST_MEDIAN&dir=ASC/);
  await ready("section.table-panel");
  users = await usersFromApi({ orderBy: { field: "COST_MEDIAN", direction: "ASC" } });
  assert.equal(await page.getByTestId("cost-rollup").textContent(), `MED ${cost(users.costRollup.median)}`);
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));

  // Sessions, descending first; back to the default order afterwards.
  await page.locator("th[data-col=sessions] button.sort").click();
  await page.waitForURL(/sort=SESSIONS&dir=DESC/);
  await ready("section.table-panel");
  users = await usersFromApi({ orderBy: { field: "SESSIONS", direction: "DESC" } });
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));
  await page.getByTestId("cost-rollup").click(); // back to SUM for the next tests
  await page.goto(`${base}/`);
  await usersPageReady();
});

test("search matches ids and emails on the server", async () => {
  const search = page.getByRole("searchbox", { name: "Search users" });
  await search.fill("user-0001");
  await page.waitForURL(/q=user-0001/);
  await ready("section.table-panel");
  let users = await usersFromApi({ search: "user-0001" });
  assert.ok(users.totalCount > 0 && users.totalCount < USERS);
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));
  assert.equal(await page.getByTestId("users-count").textContent(), `${users.nodes.length} of ${integer(users.totalCount)} users`);

  // An email-only match: the domain every changed email moved to.
  await search.fill("new.example");
  await page.waitForURL(/q=new.example/);
  await ready("section.table-panel");
  users = await usersFromApi({ search: "new.example" });
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));

  await search.fill("nobody-has-this-id");
  await page.waitForURL(/q=nobody-has-this-id/);
  await ready("section.table-panel");
  assert.deepEqual(await shownUserIds(), []);
  assert.match(await page.locator("section.table-panel .empty").textContent(), /No user matches/);

  await search.fill("");
  await page.waitForURL((url) => !url.searchParams.has("q"));
  await ready("section.table-panel");
});

test("load more pages with the API's cursor", async () => {
  const first = await usersFromApi({});
  assert.ok(first.pageInfo.hasNextPage);
  const second = await usersFromApi({ after: first.pageInfo.endCursor });
  await page.getByRole("button", { name: "Load more" }).click();
  await page.waitForFunction((n) => document.querySelectorAll("[data-testid=users-table] tbody tr").length === n,
    first.nodes.length + second.nodes.length);
  await ready("section.table-panel");
  assert.deepEqual(await shownUserIds(), [...first.nodes, ...second.nodes].map((n) => n.userId));
});

test("the column selector hides columns and remembers them", async () => {
  await page.locator(".columns-menu summary").click();
  await page.locator("input[name=column-tokens]").uncheck();
  assert.equal(await page.locator("th[data-col=tokens]").isHidden(), true);
  await page.reload();
  await usersPageReady();
  assert.equal(await page.locator("th[data-col=tokens]").isHidden(), true);
  assert.equal(await page.locator("th[data-col=cost]").isVisible(), true);
  await page.locator(".columns-menu summary").click();
  await page.locator("input[name=column-tokens]").check();
  assert.equal(await page.locator("th[data-col=tokens]").isVisible(), true);
  await page.locator(".columns-menu summary").click();
});

test("dragging across the histogram zooms to that period; back returns", async () => {
  const before = await pageRange();
  const beforeUnique = await page.locator(".card[data-metric=uniqueUsers]").getAttribute("data-value");
  const over = page.locator("[data-testid=histogram] .u-over");
  const box = await over.boundingBox();
  const y = box.y + box.height / 2;
  await page.mouse.move(box.x + box.width * 0.55, y);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.75, y, { steps: 8 });
  await page.mouse.move(box.x + box.width * 0.95, y, { steps: 8 });
  await page.mouse.up();
  await page.waitForURL(/from=.*&to=/);
  await usersPageReady();
  const url = new URL(page.url());
  const zoomed = { from: url.searchParams.get("from"), to: url.searchParams.get("to") };
  assert.deepEqual(await pageRange(), zoomed);
  assert.ok(Date.parse(zoomed.from) > Date.parse(before.from), "the zoom starts later");
  assert.ok(Date.parse(zoomed.to) - Date.parse(zoomed.from) < Date.parse(before.to) - Date.parse(before.from));
  const { usersOverview: o } = await api("overview", { range: zoomed });
  assert.equal(await page.locator(".card[data-metric=uniqueUsers] .card-value").textContent(), integer(o.uniqueUsers));
  assert.equal(await page.locator(".card[data-metric=newUsers] .card-value").textContent(), integer(o.newUsers));
  const users = await usersFromApi({});
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));
  assert.ok(await page.locator(".custom > summary.preset").evaluate((el) => el.classList.contains("active")));

  await page.goBack();
  await page.waitForURL((u) => !u.searchParams.has("from"));
  await usersPageReady();
  assert.equal(await page.locator(".card[data-metric=uniqueUsers]").getAttribute("data-value"), beforeUnique);
  await page.goForward();
  await page.waitForURL(/from=/);
  await usersPageReady();
  assert.equal(await page.locator(".card[data-metric=uniqueUsers] .card-value").textContent(), integer(o.uniqueUsers));
  await page.goto(`${base}/`);
  await usersPageReady();
});

test("a preset changes the range", async () => {
  await page.locator("button.preset[data-preset='7d']").click();
  await page.waitForURL(/range=7d/);
  await usersPageReady();
  const range = await pageRange();
  assert.equal(Date.parse(range.to) - Date.parse(range.from), 7 * 86400_000);
  const { usersOverview: o } = await api("overview", { range });
  assert.equal(await page.locator(".card[data-metric=uniqueUsers] .card-value").textContent(), integer(o.uniqueUsers));
});

test("a custom range applies its dates", async () => {
  await page.locator(".custom > summary").click();
  // datetime-local inputs hold local time: let the browser write them.
  const wanted = await page.evaluate(() => {
    const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
    const to = Math.floor(Date.now() / 3600_000) * 3600_000 - 3 * 86400_000;
    return { from: local(to - 7 * 86400_000), to: local(to), fromIso: new Date(to - 7 * 86400_000).toISOString(), toIso: new Date(to).toISOString() };
  });
  await page.locator("input[name=from]").fill(wanted.from);
  await page.locator("input[name=to]").fill(wanted.to);
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForURL(/from=.*&to=/);
  await usersPageReady();
  const range = await pageRange();
  assert.deepEqual(range, { from: wanted.fromIso.replace(".000Z", "Z"), to: wanted.toIso.replace(".000Z", "Z") });
  const { usersOverview: o } = await api("overview", { range });
  assert.equal(await page.locator(".card[data-metric=uniqueUsers] .card-value").textContent(), integer(o.uniqueUsers));
  const users = await usersFromApi({});
  assert.deepEqual(await shownUserIds(), users.nodes.map((n) => n.userId));
});

test("a user's detail shows the API's profile, and the error toggle filters sessions", async () => {
  // The user with the most sessions that has both clean and errored ones.
  await page.goto(`${base}/?sort=SESSIONS&dir=DESC`);
  await usersPageReady();
  const candidates = await usersFromApi({ orderBy: { field: "SESSIONS", direction: "DESC" } });
  const chosen = candidates.nodes.find((n) => n.erroredSessions > 0 && n.erroredSessions < n.sessions);
  assert.ok(chosen, "a user with clean and errored sessions");
  const { userId } = chosen;
  await page.locator(`tr[data-user-id="${userId}"] a.user-id`).click();
  await page.waitForURL(`${base}/users/${encodeURIComponent(userId)}`);
  await ready("[data-testid=profile]");
  await ready("[data-testid=sessions]");
  const { userDetail: user } = await api("user_detail", { userId, days: 30 });
  assert.equal(await page.locator(".user-title").textContent(), userId);
  assert.equal(await page.locator(".card[data-metric=traces] .card-value").textContent(), integer(user.traces));
  assert.equal(await page.locator(".card[data-metric=sessions] .card-value").textContent(), integer(user.sessions));
  assert.equal(await page.locator(".card[data-metric=activeDays] .card-value").textContent(), integer(user.activeDays));
  assert.equal(await page.locator(".card[data-metric=cost] .card-value").textContent(), cost(user.cost.sum));
  const rowsOf = (testid) => page.locator(`table[data-testid=${testid}] tbody tr`).count();
  assert.equal(await rowsOf("models"), user.breakdowns.models.length);
  assert.equal(await rowsOf("tools"), user.breakdowns.tools.length);
  assert.equal(await rowsOf("issues"), user.issues.length);
  assert.equal(await rowsOf("behaviours"), user.behaviours.length);
  assert.ok(await page.locator("[data-testid=activity-chart] canvas").count() >= 1);

  const all = (await api("sessions", { userId, erroredOnly: false, first: 25 })).sessions;
  const errored = (await api("sessions", { userId, erroredOnly: true, first: 25 })).sessions;
  assert.ok(errored.totalCount > 0 && errored.totalCount < all.totalCount);
  const shownSessions = () => page.$$eval("[data-session-id]", (els) => els.map((el) => el.dataset.sessionId));
  assert.equal(await page.getByTestId("sessions-count").textContent(), `${all.nodes.length} of ${integer(all.totalCount)} sessions`);
  assert.deepEqual(await shownSessions(), all.nodes.map((s) => s.sessionId));
  await screenshot("user-detail-laptop");

  await page.getByTestId("errored-only").check();
  await page.waitForFunction((text) => document.querySelector("[data-testid=sessions-count]").textContent === text,
    `${errored.nodes.length} of ${integer(errored.totalCount)} errored sessions`);
  await ready("[data-testid=sessions]");
  assert.deepEqual(await shownSessions(), errored.nodes.map((s) => s.sessionId));
  assert.equal(await page.locator("[data-session-id]:not(.bad)").count(), 0);

  await page.setViewportSize(PHONE);
  await page.getByTestId("errored-only").uncheck();
  await ready("[data-testid=sessions]");
  await screenshot("user-detail-phone", false);
  await page.goBack();
  await usersPageReady();
  await screenshot("users-page-phone", false);
  // Readable at a phone width: nothing but the table scroller is wider than the screen.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page is ${overflow}px wider than the phone screen`);
  await page.setViewportSize(LAPTOP);
});

test("a period without traces shows how to send them", async () => {
  await page.goto(`${base}/?from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z`);
  await page.getByTestId("empty-state").waitFor();
  const text = await page.getByTestId("empty-state").textContent();
  assert.match(text, /:4318/);
  assert.match(text, /:4317/);
  assert.match(text, /OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer \$USERLENS_API_KEY"/);
});

test("a refused key brings back the key prompt", async () => {
  await page.evaluate(() => localStorage.setItem("userlens.apiKey", "ul_not_a_key_of_this_server"));
  await page.goto(`${base}/`);
  await page.getByTestId("key-prompt").waitFor();
  assert.match(await page.getByTestId("key-prompt").textContent(), /UNAUTHENTICATED/);
  assert.equal(await page.evaluate(() => localStorage.getItem("userlens.apiKey")), null);
});

test("users-query down shows the gateway's error code", async () => {
  const gateway = start(["gateway"], {
    USERLENS_GRAPHQL_ADDR: "127.0.0.1:0",
    USERLENS_QUERY_URL: `http://127.0.0.1:${await closedPort()}`,
  });
  const [, addr] = await gateway.waitFor("stderr", /listener="?graphql"? addr=(\S+)/, "the gateway address");
  const lonely = `http://${addr}`;
  await page.goto(`${lonely}/`);
  await page.getByTestId("key-input").fill("ul_any_key_the_gateway_forwards");
  await page.getByRole("button", { name: "Save key" }).click();
  const error = page.locator("section.overview [data-testid=error]");
  await error.waitFor();
  assert.match(await error.textContent(), /^UNAVAILABLE /);
  await page.locator("section.table-panel[data-state=error]").waitFor();
  gateway.child.kill("SIGTERM");
  await gateway.exited;
});

test("no script error or Content-Security-Policy violation on any page", () => {
  assert.deepEqual(pageErrors, []);
});
