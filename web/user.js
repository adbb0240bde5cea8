// A user's detail: lifetime profile, 30-day activity, issues, behaviours, model / provider /
// tool breakdowns and their sessions (paged; optionally only the errored ones).

import { graphql } from "./api.js";
import { dailyActivity } from "./charts.js";
import { h, replace } from "./dom.js";
import {
  formatCost, formatDateTime, formatDuration, formatInteger, formatPercent, formatTokens,
} from "./format.js";

const SESSIONS_PAGE = 25;

function table(testid, columns, rows, emptyText) {
  if (rows.length === 0) return h("p", { class: "empty", "data-testid": testid }, emptyText);
  return h("div", { class: "table-scroll" }, h("table", { "data-testid": testid },
    h("thead", {}, h("tr", {}, columns.map(([label, , numeric]) => h("th", { scope: "col", class: numeric ? "num" : null }, label)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, value, numeric]) => h("td", { class: numeric ? "num" : null }, value(row))))))));
}

export function mountUserPage(root, userId, ctx) {
  const profile = h("section", { class: "panel", "aria-label": "Profile", "data-testid": "profile" });
  const sessionsSection = h("section", { class: "panel", "aria-label": "Sessions", "data-testid": "sessions" });
  replace(root,
    h("div", { class: "toolbar" },
      h("a", { href: "/", "data-link": true, class: "back" }, "← Users"),
      h("h1", { class: "user-title" }, userId)),
    profile, sessionsSection);

  let erroredOnly = false;
  let sessions = [];
  let page = null;
  let seq = 0;
  const sessionsBody = h("div", {});
  const sessionsCount = h("span", { class: "count", "data-testid": "sessions-count" });
  const toggle = h("input", {
    type: "checkbox", name: "errored-only", "data-testid": "errored-only",
    onchange: () => { erroredOnly = toggle.checked; loadSessions(false); },
  });
  const loadMore = h("button", { type: "button", class: "load-more", hidden: true, onclick: () => loadSessions(true) }, "Load more sessions");
  replace(sessionsSection,
    h("div", { class: "table-tools" }, h("h2", {}, "Sessions"), sessionsCount,
      h("label", { class: "toggle" }, toggle, " Errored sessions only")),
    sessionsBody, loadMore);

  function error(section, status, err, retry) {
    if (ctx.failed(err)) return;
    section.dataset.state = "error";
    replace(status, h("div", { class: "error", role: "alert", "data-testid": "error" },
      h("strong", {}, err.code), ` ${err.message}`, " ", h("button", { type: "button", onclick: retry }, "Retry")));
  }

  async function loadProfile() {
    profile.dataset.state = "loading";
    replace(profile, h("p", { class: "loading" }, "Loading…"));
    try {
      const { userDetail: user } = await graphql("user_detail", { userId, days: 30 });
      if (!user) {
        profile.dataset.state = "empty";
        replace(profile, h("p", { class: "empty", "data-testid": "no-user" }, `No traces for user “${userId}”.`));
        return;
      }
      const stats = [
        ["traces", "Traces", formatInteger(user.traces)],
        ["sessions", "Sessions", formatInteger(user.sessions)],
        ["erroredSessions", "Errored sessions", `${formatInteger(user.erroredSessions)} (${formatPercent(user.sessions ? user.erroredSessions / user.sessions : 0)})`],
        ["cost", "Cost", formatCost(user.cost.sum)],
        ["tokens", "Tokens", formatTokens(user.tokens.total)],
        ["averageTraceDurationMs", "Avg trace duration", formatDuration(user.averageTraceDurationMs)],
        ["activeDays", "Active days", formatInteger(user.activeDays)],
      ];
      const chart = h("div", { class: "chart", "data-testid": "activity-chart" });
      const b = user.breakdowns;
      replace(profile,
        h("div", { class: "identity" },
          user.email ? h("span", { class: "email" }, user.email) : null,
          h("span", {}, `First seen ${formatDateTime(user.firstSeenAt)} · last seen ${formatDateTime(user.lastSeenAt)}`)),
        h("div", { class: "cards" }, stats.map(([key, label, value]) =>
          h("div", { class: "card", "data-metric": key }, h("div", { class: "card-label" }, label), h("div", { class: "card-value" }, value)))),
        h("div", { class: "cost-stats" }, `Cost per trace: average ${formatCost(user.cost.average)}, median ${formatCost(user.cost.median)} · tokens in ${formatTokens(user.tokens.input)} (cached ${formatTokens(user.tokens.cachedInput)}), out ${formatTokens(user.tokens.output)}`),
        h("h2", {}, "Last 30 days"), chart,
        h("div", { class: "grid-2" },
          h("div", {}, h("h2", {}, "Issues"), table("issues", [
            ["Issue", (i) => i.title ? [h("div", {}, i.title), h("div", { class: "muted" }, i.id)] : i.id],
            ["Traces", (i) => formatInteger(i.traces), true],
            ["Sessions", (i) => formatInteger(i.sessions), true],
            ["Last seen", (i) => formatDateTime(i.lastSeenAt)],
          ], user.issues, "No issues linked to this user's traces.")),
          h("div", {}, h("h2", {}, "Behaviours"), table("behaviours", [
            ["Behaviour", (x) => x.name],
            ["Traces", (x) => formatInteger(x.traces), true],
            ["Sessions", (x) => formatInteger(x.sessions), true],
            ["Last seen", (x) => formatDateTime(x.lastSeenAt)],
          ], user.behaviours, "No behaviours recorded."))),
        h("h2", {}, "Usage"),
        h("div", { class: "grid-3" },
          h("div", {}, h("h3", {}, "Models"), table("models", [
            ["Model", (m) => [m.model, m.provider ? h("div", { class: "muted" }, m.provider) : null]],
            ["Calls", (m) => formatInteger(m.calls), true],
            ["Tokens", (m) => formatTokens(m.tokens.total), true],
            ["Cost", (m) => formatCost(m.cost), true],
          ], b.models, "No LLM calls.")),
          h("div", {}, h("h3", {}, "Providers"), table("providers", [
            ["Provider", (p) => p.provider],
            ["Calls", (p) => formatInteger(p.calls), true],
            ["Tokens", (p) => formatTokens(p.tokens.total), true],
            ["Cost", (p) => formatCost(p.cost), true],
          ], b.providers, "No providers named.")),
          h("div", {}, h("h3", {}, "Tools"), table("tools", [
            ["Tool", (t) => t.tool],
            ["Calls", (t) => formatInteger(t.calls), true],
            ["Errors", (t) => formatInteger(t.errors), true],
            ["Traces", (t) => formatInteger(t.traces), true],
          ], b.tools, "No tool calls."))));
      dailyActivity(chart, user.activity);
      profile.dataset.state = "ready";
    } catch (err) {
      error(profile, profile, err, loadProfile);
    }
  }

  async function loadSessions(more) {
    const mine = ++seq;
    sessionsSection.dataset.state = "loading";
    loadMore.disabled = true;
    if (!more) replace(sessionsBody, h("p", { class: "loading" }, "Loading…"));
    try {
      const data = await graphql("sessions", {
        userId, erroredOnly, first: SESSIONS_PAGE, after: more ? page.pageInfo.endCursor : null,
      });
      if (mine !== seq) return;
      page = data.sessions;
      sessions = more ? sessions.concat(page.nodes) : page.nodes;
      sessionsCount.textContent = `${formatInteger(sessions.length)} of ${formatInteger(page.totalCount)}${erroredOnly ? " errored" : ""} sessions`;
      loadMore.hidden = !page.pageInfo.hasNextPage;
      replace(sessionsBody, table("sessions-table", [
        ["Session", (s) => h("span", { class: s.errored ? "session-id bad" : "session-id", "data-session-id": s.sessionId }, s.sessionId)],
        ["Started", (s) => formatDateTime(s.startedAt)],
        ["Duration", (s) => formatDuration(s.durationMs), true],
        ["Traces", (s) => formatInteger(s.traces), true],
        ["Errored traces", (s) => formatInteger(s.erroredTraces), true],
        ["Cost", (s) => formatCost(s.cost), true],
        ["Tokens", (s) => formatTokens(s.tokens.total), true],
      ], sessions, erroredOnly ? "No errored sessions." : "No sessions."));
      sessionsSection.dataset.state = "ready";
    } catch (err) {
      if (mine === seq) error(sessionsSection, sessionsBody, err, () => loadSessions(more));
    } finally {
      loadMore.disabled = false;
    }
  }

  loadProfile();
  loadSessions(false);
}
