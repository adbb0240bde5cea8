// The users page: overview cards, the activity histogram (drag to zoom) and the users table.
// Everything the table shows comes one page at a time from the API, sorted and searched on
// the server: with 50,000 users the browser holds only the rows it was sent.

import { graphql } from "./api.js";
import { activityHistogram, sparkline } from "./charts.js";
import { debounce, h, replace } from "./dom.js";
import {
  formatCost, formatDateTime, formatDecimal, formatInteger, formatPercent, formatRelative, formatTokens,
} from "./format.js";
import { PRESETS, rangeFromParams, rangeInput, setRangeParams, toLocalInput } from "./range.js";

const PAGE_SIZE = 50;
const TREND_BUCKETS = 14;
const HIDDEN_COLUMNS_STORAGE = "userlens.hiddenColumns";
const COST_STAT_STORAGE = "userlens.costRollup";

// The overview cards. Each shows its change against the previous equal-length period, from
// the API's `previousPeriod` (SPEC §4.8: the change is the client's arithmetic).
const CARDS = [
  { key: "uniqueUsers", label: "Unique users", format: formatInteger, detail: (o) => `${formatInteger(o.traces)} traces` },
  { key: "newUsers", label: "New users", format: formatInteger, detail: (o) => `first trace in this period · ${formatInteger(o.returningUsers)} returning` },
  { key: "userTraceShare", label: "Traces with a user", format: formatPercent, detail: (o) => `${formatInteger(o.tracesWithUser)} of ${formatInteger(o.traces)}` },
  { key: "tracesPerUser", label: "Traces per user", format: formatDecimal, detail: () => "traces with a user / users" },
  { key: "sessionsPerUser", label: "Sessions per user", format: formatDecimal, detail: (o) => `${formatInteger(o.sessionsWithUser)} sessions with a user` },
];

/**
 * A card's change against the previous period: `{ kind, text }` with kind `up`, `down`,
 * `flat` or `new`, or null without a previous figure. (current − previous) / previous in
 * whole percent ("+12 %", "−3 %", "0 %"); "new" when the previous figure is 0 and the
 * current one is not (both 0 is "0 %").
 */
export function periodChange(current, previous) {
  if (previous === null || previous === undefined) return null;
  const now = Number(current);
  const before = Number(previous);
  if (before === 0) return now === 0 ? { kind: "flat", text: "0 %" } : { kind: "new", text: "new" };
  const percent = Math.round(((now - before) / before) * 100);
  if (percent === 0) return { kind: "flat", text: "0 %" };
  return { kind: percent > 0 ? "up" : "down", text: `${percent > 0 ? "+" : "\u2212"}${formatInteger(Math.abs(percent))} %` };
}

const COST_STATS = [
  { key: "SUM", field: "sum", order: "COST_SUM", rollup: "sum" },
  { key: "AVG", field: "average", order: "COST_AVERAGE", rollup: "average" },
  { key: "MED", field: "median", order: "COST_MEDIAN", rollup: "median" },
];

const COLUMNS = [
  { key: "user", label: "User", order: "USER_ID", fixed: true },
  { key: "lastSeen", label: "Last seen", order: "LAST_SEEN" },
  { key: "firstSeen", label: "First seen", order: "FIRST_SEEN" },
  { key: "trend", label: "Trend" },
  { key: "traces", label: "Traces", order: "TRACES", numeric: true },
  { key: "sessions", label: "Sessions", order: "SESSIONS", numeric: true },
  { key: "errors", label: "Errors", order: "ERROR_RATE", numeric: true },
  { key: "cost", label: "Cost", numeric: true },
  { key: "tokens", label: "Tokens", order: "TOKENS", numeric: true },
];

const DEFAULT_ORDER = { field: "LAST_SEEN", direction: "DESC" };
const ORDER_FIELDS = new Set([...COLUMNS.map((c) => c.order).filter(Boolean), ...COST_STATS.map((s) => s.order), "ERRORED_SESSIONS", "EMAIL"]);

export function orderFromParams(params) {
  const field = params.get("sort");
  if (!field || !ORDER_FIELDS.has(field)) return DEFAULT_ORDER;
  return { field, direction: params.get("dir") === "ASC" ? "ASC" : "DESC" };
}

function hiddenColumns() {
  try {
    const stored = JSON.parse(localStorage.getItem(HIDDEN_COLUMNS_STORAGE) ?? "[]");
    return new Set(Array.isArray(stored) ? stored : []);
  } catch {
    return new Set();
  }
}

function costStat() {
  return COST_STATS.find((s) => s.key === localStorage.getItem(COST_STAT_STORAGE)) ?? COST_STATS[0];
}

/**
 * Mounts the page in `root`. `ctx.navigate(mutate, {replace})` changes the URL's query
 * parameters; `ctx.failed(error)` handles an error every section shares (a refused key).
 */
export function mountUsersPage(root, ctx) {
  const rangeLabel = h("span", { class: "range-label", "data-testid": "range-label" });
  const presetButtons = PRESETS.map((preset) =>
    h("button", {
      type: "button", class: "preset", "data-preset": preset.key,
      onclick: () => ctx.navigate((p) => setRangeParams(p, preset.key)),
    }, preset.label));
  const fromInput = h("input", { type: "datetime-local", "aria-label": "From", name: "from" });
  const toInput = h("input", { type: "datetime-local", "aria-label": "To", name: "to" });
  const custom = h("form", {
    class: "custom-range",
    onsubmit: (event) => {
      event.preventDefault();
      const from = new Date(fromInput.value);
      const to = new Date(toInput.value);
      if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || to <= from) {
        fromInput.setCustomValidity("The start must be before the end");
        fromInput.reportValidity();
        return;
      }
      fromInput.setCustomValidity("");
      ctx.navigate((p) => setRangeParams(p, { from, to }));
    },
  }, fromInput, h("span", {}, "→"), toInput, h("button", { type: "submit" }, "Apply"));
  const customToggle = h("details", { class: "custom" }, h("summary", { "data-preset": "custom", class: "preset" }, "Custom"), custom);

  const cards = h("div", { class: "cards", "data-testid": "overview-cards" });
  const histogram = h("div", { class: "chart histogram", "data-testid": "histogram" });
  const overviewStatus = h("div", { class: "status" });
  const overview = h("section", { class: "panel overview", "aria-label": "Users overview" },
    cards, h("div", { class: "chart-head" }, h("h2", {}, "Activity"), h("span", { class: "hint" }, "Drag across the chart to zoom")),
    histogram, overviewStatus);

  const search = h("input", {
    type: "search", placeholder: "Search user id or email", "aria-label": "Search users", name: "search",
    oninput: debounce(() => ctx.navigate((p) => {
      const text = search.value.trim();
      if (text) p.set("q", text); else p.delete("q");
    }, { replace: true }), 250),
  });
  const columnsMenu = h("details", { class: "columns-menu" }, h("summary", {}, "Columns"));
  const count = h("span", { class: "count", "data-testid": "users-count" });
  const table = h("table", { class: "users", "data-testid": "users-table" });
  const tableStatus = h("div", { class: "status" });
  const loadMore = h("button", { type: "button", class: "load-more", hidden: true, onclick: () => loadPage(true) }, "Load more");
  const tableSection = h("section", { class: "panel table-panel", "aria-label": "Users" },
    h("div", { class: "table-tools" }, search, count, columnsMenu),
    h("div", { class: "table-scroll" }, table), tableStatus, loadMore);

  replace(root,
    h("div", { class: "toolbar" }, h("h1", {}, "Users"), h("div", { class: "range-controls" }, presetButtons, customToggle, rangeLabel)),
    overview, tableSection);

  let params = new URLSearchParams();
  let range;
  let overviewKey = null;
  let tableKey = null;
  let overviewSeq = 0;
  let tableSeq = 0;
  let rows = [];
  let connection = null;
  let sparklines = [];

  function renderColumnsMenu() {
    const hidden = hiddenColumns();
    replace(columnsMenu, h("summary", {}, "Columns"), COLUMNS.filter((c) => !c.fixed).map((column) =>
      h("label", {}, h("input", {
        type: "checkbox", name: `column-${column.key}`, checked: !hidden.has(column.key),
        onchange: (event) => {
          const next = hiddenColumns();
          if (event.target.checked) next.delete(column.key); else next.add(column.key);
          localStorage.setItem(HIDDEN_COLUMNS_STORAGE, JSON.stringify([...next]));
          renderTable();
        },
      }), column.label)));
  }

  function setOrder(column) {
    const current = orderFromParams(params);
    const field = column.key === "cost" ? costStat().order : column.order;
    const direction = current.field === field
      ? (current.direction === "DESC" ? "ASC" : "DESC")
      : (field === "USER_ID" ? "ASC" : "DESC");
    ctx.navigate((p) => { p.set("sort", field); p.set("dir", direction); });
  }

  function cycleCostStat() {
    const next = COST_STATS[(COST_STATS.indexOf(costStat()) + 1) % COST_STATS.length];
    localStorage.setItem(COST_STAT_STORAGE, next.key);
    // A table sorted by cost follows the statistic it shows.
    if (COST_STATS.some((s) => s.order === orderFromParams(params).field)) {
      ctx.navigate((p) => { p.set("sort", next.order); });
    } else {
      renderTable();
    }
  }

  function header(column, order, hidden) {
    const stat = costStat();
    const field = column.key === "cost" ? stat.order : column.order;
    const sorted = field && order.field === field;
    const sortButton = field
      ? h("button", { type: "button", class: "sort", "data-sort": column.key, onclick: () => setOrder(column) },
        column.label, h("span", { class: "sort-icon", "aria-hidden": "true" }, sorted ? (order.direction === "DESC" ? "▼" : "▲") : "↕"))
      : column.label;
    const extra = column.key === "cost" && connection
      ? h("button", { type: "button", class: "rollup", "data-testid": "cost-rollup", title: "Cycle SUM / AVG / MED", onclick: cycleCostStat },
        `${stat.key} ${formatCost(connection.costRollup[stat.rollup])}`)
      : null;
    return h("th", {
      scope: "col", class: column.numeric ? "num" : null, hidden: hidden.has(column.key),
      "data-col": column.key, "aria-sort": sorted ? (order.direction === "DESC" ? "descending" : "ascending") : null,
    }, sortButton, extra);
  }

  function cell(column, row, hidden) {
    const attrs = { class: column.numeric ? "num" : null, hidden: hidden.has(column.key), "data-col": column.key };
    switch (column.key) {
      case "user":
        return h("td", attrs, h("a", { href: `/users/${encodeURIComponent(row.userId)}`, "data-link": true, class: "user-id" }, row.userId),
          row.email ? h("div", { class: "email" }, row.email) : null);
      case "lastSeen":
        return h("td", { ...attrs, title: formatDateTime(row.lastSeenAt) }, formatRelative(row.lastSeenAt));
      case "firstSeen":
        return h("td", { ...attrs, title: formatDateTime(row.firstSeenAt) }, formatRelative(row.firstSeenAt));
      case "trend": {
        const el = h("td", { ...attrs, class: "trend" });
        if (!hidden.has("trend")) sparklines.push(sparkline(el, row.trend));
        return el;
      }
      case "traces": return h("td", attrs, formatInteger(row.traces));
      case "sessions": return h("td", attrs, formatInteger(row.sessions));
      case "errors":
        return h("td", { ...attrs, title: `${row.erroredSessions} of ${row.sessions} sessions errored` },
          h("span", { class: row.erroredSessions > 0 ? "error-rate bad" : "error-rate" }, formatPercent(row.errorRate)),
          h("span", { class: "error-count" }, ` · ${formatInteger(row.erroredSessions)}`));
      case "cost": return h("td", attrs, formatCost(row.cost[costStat().field]));
      case "tokens": return h("td", attrs, formatTokens(row.tokens.total));
      default: return h("td", attrs);
    }
  }

  function renderTable() {
    for (const chart of sparklines) chart.destroy();
    sparklines = [];
    const hidden = hiddenColumns();
    const order = orderFromParams(params);
    const body = h("tbody", {}, rows.map((row) =>
      h("tr", { "data-user-id": row.userId }, COLUMNS.map((column) => cell(column, row, hidden)))));
    replace(table, h("thead", {}, h("tr", {}, COLUMNS.map((column) => header(column, order, hidden)))), body);
    if (connection) {
      count.textContent = `${formatInteger(rows.length)} of ${formatInteger(connection.totalCount)} users`;
      loadMore.hidden = !connection.pageInfo.hasNextPage;
      if (rows.length === 0) {
        const q = params.get("q");
        replace(tableStatus, h("p", { class: "empty" }, q ? `No user matches “${q}” in this period.` : "No users in this period."));
      } else {
        replace(tableStatus);
      }
    }
  }

  function showError(status, section, error, retry) {
    if (ctx.failed(error)) return;
    section.dataset.state = "error";
    replace(status, h("div", { class: "error", role: "alert", "data-testid": "error" },
      h("strong", {}, error.code), ` ${error.message}`, " ",
      h("button", { type: "button", onclick: retry }, "Retry")));
  }

  async function loadOverview() {
    const seq = ++overviewSeq;
    overview.dataset.state = "loading";
    replace(overviewStatus, h("p", { class: "loading" }, "Loading…"));
    try {
      const data = await graphql("overview", { range: rangeInput(range) });
      if (seq !== overviewSeq) return;
      const o = data.usersOverview;
      const previous = o.previousPeriod;
      replace(cards, CARDS.map((card) => {
        const change = periodChange(o[card.key], previous?.[card.key]);
        return h("div", { class: "card", "data-metric": card.key, "data-value": o[card.key], "data-previous": previous?.[card.key] },
          h("div", { class: "card-label" }, card.label),
          h("div", { class: "card-value" }, card.format(o[card.key])),
          change === null ? null : h("div", {
            class: `card-change ${change.kind}`, "data-testid": "card-change",
            title: `Previous period (${formatDateTime(previous.from)} – ${formatDateTime(previous.to)}): ${card.format(previous[card.key])}`,
          }, change.text, h("span", { class: "card-change-label" }, " vs previous period")),
          h("div", { class: "card-detail" }, card.detail(o)));
      }));
      replace(histogram);
      replace(overviewStatus);
      if (o.traces === 0) {
        overview.dataset.state = "empty";
        tableSection.hidden = true;
        replace(overviewStatus, emptyState());
        return;
      }
      tableSection.hidden = false;
      activityHistogram(histogram, o.histogram, range, (from, to) =>
        ctx.navigate((p) => setRangeParams(p, { from, to })));
      overview.dataset.state = "ready";
    } catch (error) {
      if (seq === overviewSeq) showError(overviewStatus, overview, error, loadOverview);
    }
  }

  async function loadPage(more = false) {
    const seq = ++tableSeq;
    tableSection.dataset.state = "loading";
    loadMore.disabled = true;
    if (!more) replace(tableStatus, h("p", { class: "loading" }, "Loading…"));
    const q = params.get("q");
    try {
      const data = await graphql("users", {
        range: rangeInput(range),
        search: q || null,
        orderBy: orderFromParams(params),
        first: PAGE_SIZE,
        after: more ? connection.pageInfo.endCursor : null,
        trendBuckets: TREND_BUCKETS,
      });
      if (seq !== tableSeq) return;
      connection = data.users;
      rows = more ? rows.concat(connection.nodes) : connection.nodes;
      renderTable();
      tableSection.dataset.state = "ready";
    } catch (error) {
      if (seq === tableSeq) showError(tableStatus, tableSection, error, () => loadPage(more));
    } finally {
      loadMore.disabled = false;
    }
  }

  function emptyState() {
    const host = location.hostname || "127.0.0.1";
    return h("div", { class: "empty-state", "data-testid": "empty-state" },
      h("h2", {}, "No traces in this period yet"),
      h("p", {}, "Send OpenTelemetry traces with user.id, user.email and session.id on the root span, then reload. From an OpenTelemetry SDK or Collector:"),
      h("pre", {}, `export OTEL_EXPORTER_OTLP_ENDPOINT=http://${host}:4318   # OTLP/HTTP\n` +
        `# or http://${host}:4317 with OTEL_EXPORTER_OTLP_PROTOCOL=grpc\n` +
        'export OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer $USERLENS_API_KEY"'),
      h("p", {}, "Or load demo data: ", h("code", {}, "cargo run --release -- demo --traces 2000"), ". If traces were sent earlier, pick a wider range above."));
  }

  renderColumnsMenu();

  return {
    update(nextParams) {
      params = nextParams;
      range = rangeFromParams(params);
      for (const button of root.querySelectorAll(".preset")) {
        button.classList.toggle("active", (button.dataset.preset === "custom" && !range.preset) || button.dataset.preset === range.preset);
      }
      rangeLabel.textContent = `${formatDateTime(range.from)} – ${formatDateTime(range.to)}`;
      Object.assign(rangeLabel.dataset, rangeInput(range));
      fromInput.value = toLocalInput(range.from);
      toInput.value = toLocalInput(range.to);
      if (document.activeElement !== search) search.value = params.get("q") ?? "";
      const rangeKey = `${range.from.getTime()}|${range.to.getTime()}`;
      if (rangeKey !== overviewKey) {
        overviewKey = rangeKey;
        loadOverview();
      }
      const order = orderFromParams(params);
      const nextTableKey = `${rangeKey}|${params.get("q") ?? ""}|${order.field}|${order.direction}`;
      if (nextTableKey !== tableKey) {
        tableKey = nextTableKey;
        loadPage(false);
      }
    },
  };
}
