//! The tools: each maps its arguments to one GraphQL operation of the gateway and answers
//! with the operation's `data` as structured content, or, when GraphQL reports errors, a
//! tool error (`isError: true`) whose structured content lists them with their codes.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Extensions, ServerCapabilities, ServerConfig};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use userlens_gateway::LocalGraphql;

const OVERVIEW: &str = "query($range: TimeRangeInput!) { usersOverview(range: $range) { \
    uniqueUsers newUsers returningUsers traces tracesWithUser userTraceShare tracesPerUser \
    sessions sessionsWithUser sessionsPerUser \
    histogram { bucketSeconds buckets { start traces tracesWithUser activeUsers sessions \
    erroredSessions erroredTraces } } } }";

const USER_ROW: &str = "userId email firstSeenAt lastSeenAt traces sessions erroredSessions \
    errorRate cost { sum average median } tokens { input output cachedInput total }";

const DETAIL: &str = "query($userId: String!, $days: Int) { userDetail(userId: $userId) { \
    userId email firstSeenAt lastSeenAt traces sessions erroredSessions \
    cost { sum average median } tokens { input output cachedInput total } \
    averageTraceDurationMs activeDays \
    activity(days: $days) { date traces erroredTraces sessions erroredSessions cost } \
    issues { id title traces sessions firstSeenAt lastSeenAt } \
    behaviours { name traces sessions firstSeenAt lastSeenAt } } }";

const SESSIONS: &str = "query($userId: String!, $range: TimeRangeInput, $erroredOnly: Boolean, \
    $first: Int, $after: String) { sessions(userId: $userId, range: $range, \
    erroredOnly: $erroredOnly, first: $first, after: $after) { totalCount \
    pageInfo { hasNextPage endCursor } nodes { sessionId startedAt endedAt durationMs traces \
    erroredTraces errored cost tokens { input output cachedInput total } } } }";

const BREAKDOWNS: &str = "query($userId: String!, $range: TimeRangeInput) { \
    breakdowns(userId: $userId, range: $range) { \
    models { model provider calls traces cost tokens { input output cachedInput total } } \
    providers { provider calls traces cost tokens { input output cachedInput total } } \
    tools { tool calls errors traces } } }";

const MONITORS: &str = "{ monitors { id name userId condition threshold minSessions \
    windowSeconds webhookUrl enabled createdAt updatedAt firingUsers } }";

const MONITOR_EVENTS: &str = "query($monitorId: ID, $first: Int!, $before: ID) { \
    monitorEvents(monitorId: $monitorId, first: $first, before: $before) { \
    hasNextPage endCursor nodes { id monitorId userId kind episode createdAt \
    delivery attempts lastStatus lastError deliveredAt } } }";

/// A half-open time range on trace time.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RangeArgs {
    /// Start, inclusive: RFC 3339 (`2026-03-01T00:00:00Z`).
    pub from: String,
    /// End, exclusive: RFC 3339, after `from`.
    pub to: String,
}

/// Users overview arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct OverviewArgs {
    #[serde(flatten)]
    pub range: RangeArgs,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderField {
    LastSeen,
    FirstSeen,
    Traces,
    Sessions,
    ErroredSessions,
    ErrorRate,
    CostSum,
    CostAverage,
    CostMedian,
    Tokens,
    UserId,
    Email,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    Asc,
    Desc,
}

/// Conditions the users must meet; all that are given apply.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct FilterArgs {
    /// Least total cost (USD) in range.
    pub min_cost_sum: Option<f64>,
    /// Greatest total cost (USD) in range.
    pub max_cost_sum: Option<f64>,
    /// Only users with an errored session in range.
    pub errored_only: Option<bool>,
    /// Users who called any of these models in range.
    pub models: Option<Vec<String>>,
    /// Users who called any of these providers in range.
    pub providers: Option<Vec<String>>,
    /// Users whose traces used any of these tools in range.
    pub tools: Option<Vec<String>>,
    /// Users with this issue in range.
    pub issue_id: Option<String>,
    /// Users with this behaviour in range.
    pub behaviour: Option<String>,
    /// Users with (true) or without (false) a known email.
    pub has_email: Option<bool>,
}

/// Users table arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListUsersArgs {
    #[serde(flatten)]
    pub range: RangeArgs,
    /// Case-insensitive substring of the user id or email; at most 500 characters.
    pub search: Option<String>,
    /// Sort key; default `LAST_SEEN`.
    pub order_by: Option<OrderField>,
    /// Sort direction; default `DESC`.
    pub direction: Option<Direction>,
    /// Page size, 1–200; default 50.
    pub first: Option<i32>,
    /// `endCursor` of the previous page (with the same filter and order).
    pub after: Option<String>,
    pub filter: Option<FilterArgs>,
}

/// User detail arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct UserDetailArgs {
    pub user_id: String,
    /// Days of daily activity, 1–365; default 30.
    pub activity_days: Option<i32>,
}

/// Sessions arguments; lifetime when `from` and `to` are absent.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SessionsArgs {
    pub user_id: String,
    /// Start of the range, RFC 3339 (give `to` too).
    pub from: Option<String>,
    /// End of the range, RFC 3339 (give `from` too).
    pub to: Option<String>,
    /// Only sessions with an errored trace.
    pub errored_only: Option<bool>,
    /// Page size, 1–200; default 50.
    pub first: Option<i32>,
    /// `endCursor` of the previous page.
    pub after: Option<String>,
}

/// Breakdowns arguments; lifetime when `from` and `to` are absent.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BreakdownsArgs {
    pub user_id: String,
    /// Start of the range, RFC 3339 (give `to` too).
    pub from: Option<String>,
    /// End of the range, RFC 3339 (give `from` too).
    pub to: Option<String>,
}

/// Monitors arguments (none).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct MonitorsArgs {}

/// Monitor events arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MonitorEventsArgs {
    /// Only this monitor's events; all monitors of the project when absent.
    pub monitor_id: Option<String>,
    /// Page size, 1–200; default 50.
    pub first: Option<i32>,
    /// `endCursor` of the previous page (events older than this id).
    pub before: Option<String>,
}

fn range(range: &RangeArgs) -> Value {
    json!({ "from": range.from, "to": range.to })
}

/// Both ends or neither; one alone is refused naming the missing one.
fn optional_range(from: &Option<String>, to: &Option<String>) -> Result<Value, CallToolResult> {
    match (from, to) {
        (Some(from), Some(to)) => Ok(json!({ "from": from, "to": to })),
        (None, None) => Ok(Value::Null),
        (Some(_), None) => Err(refusal("to", "`to` is required with `from`")),
        (None, Some(_)) => Err(refusal("from", "`from` is required with `to`")),
    }
}

fn refusal(field: &str, message: &str) -> CallToolResult {
    CallToolResult::structured_error(json!({
        "errors": [{ "message": message, "code": "BAD_USER_INPUT", "field": field }]
    }))
}

fn filter(filter: &FilterArgs) -> Value {
    let mut fields = Map::new();
    let mut put = |name: &str, value: Value| {
        if !value.is_null() {
            fields.insert(name.to_owned(), value);
        }
    };
    put("minCostSum", json!(filter.min_cost_sum));
    put("maxCostSum", json!(filter.max_cost_sum));
    put("erroredOnly", json!(filter.errored_only));
    put("models", json!(filter.models));
    put("providers", json!(filter.providers));
    put("tools", json!(filter.tools));
    put("issueId", json!(filter.issue_id));
    put("behaviour", json!(filter.behaviour));
    put("hasEmail", json!(filter.has_email));
    Value::Object(fields)
}

fn enum_name<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The tools of one MCP session: the stdio key, or each HTTP request's `Authorization`.
#[derive(Clone)]
pub struct UserlensTools {
    graphql: Arc<LocalGraphql>,
    authorization: Option<String>,
    tool_router: ToolRouter<Self>,
}

impl UserlensTools {
    /// `authorization` (`Bearer <key>`) serves every call; without it each call takes the
    /// `Authorization` header of its HTTP request.
    pub fn new(graphql: Arc<LocalGraphql>, authorization: Option<String>) -> Self {
        Self {
            graphql,
            authorization,
            tool_router: Self::tool_router(),
        }
    }

    async fn run(&self, extensions: &Extensions, query: &str, variables: Value) -> CallToolResult {
        let header = extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get(http::header::AUTHORIZATION))
            .and_then(|value| value.to_str().ok());
        let authorization = self.authorization.as_deref().or(header).unwrap_or_default();
        let response = self.graphql.execute(authorization, query, variables).await;
        let errors: Vec<Value> = response
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .map(|error| {
                        let extensions = &error["extensions"];
                        json!({
                            "message": error["message"],
                            "code": extensions["code"],
                            "field": extensions["field"],
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if errors.is_empty() {
            CallToolResult::structured(response.get("data").cloned().unwrap_or(json!({})))
        } else {
            CallToolResult::structured_error(json!({ "errors": errors }))
        }
    }
}

#[tool_router]
impl UserlensTools {
    /// Users, traces and sessions in a time range, with an activity histogram.
    #[tool(
        name = "users_overview",
        description = "Users overview for a time range [from, to): unique, new and returning \
            users, traces (with a user, share, per user), sessions (with a user, per user) and \
            an activity histogram. Answers `{usersOverview: {...}}`."
    )]
    async fn users_overview(
        &self,
        Parameters(args): Parameters<OverviewArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(self
            .run(
                &extensions,
                OVERVIEW,
                json!({ "range": range(&args.range) }),
            )
            .await)
    }

    #[tool(
        name = "list_users",
        description = "One page of the users with a trace in [from, to): per user traces, \
            sessions, errored sessions, error rate, cost and tokens. Search, order, filters \
            and cursor paging; answers `{users: {totalCount, costRollup, pageInfo, nodes}}`."
    )]
    async fn list_users(
        &self,
        Parameters(args): Parameters<ListUsersArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        let query = format!(
            "query($range: TimeRangeInput!, $search: String, $orderBy: UserOrder, $first: Int, \
             $after: String, $filter: UserFilter) {{ users(range: $range, search: $search, \
             orderBy: $orderBy, first: $first, after: $after, filter: $filter) {{ totalCount \
             costRollup {{ sum average median }} pageInfo {{ hasNextPage endCursor }} \
             nodes {{ {USER_ROW} }} }} }}"
        );
        let order_by = match (args.order_by, args.direction) {
            (None, None) => Value::Null,
            (field, direction) => json!({
                "field": enum_name(field.unwrap_or(OrderField::LastSeen)),
                "direction": enum_name(direction.unwrap_or(Direction::Desc)),
            }),
        };
        let variables = json!({
            "range": range(&args.range),
            "search": args.search,
            "orderBy": order_by,
            "first": args.first,
            "after": args.after,
            "filter": args.filter.as_ref().map(filter),
        });
        Ok(self.run(&extensions, &query, variables).await)
    }

    #[tool(
        name = "user_detail",
        description = "A user's lifetime profile: first and last seen, traces, sessions, \
            errored sessions, cost, tokens, average trace duration, active days, daily \
            activity, issues and behaviours. Answers `{userDetail: null}` for an unknown user."
    )]
    async fn user_detail(
        &self,
        Parameters(args): Parameters<UserDetailArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        let variables = json!({ "userId": args.user_id, "days": args.activity_days });
        Ok(self.run(&extensions, DETAIL, variables).await)
    }

    #[tool(
        name = "sessions",
        description = "One page of a user's sessions, newest first, in [from, to) or over the \
            lifetime; optionally only errored ones. Answers `{sessions: {totalCount, pageInfo, \
            nodes}}`."
    )]
    async fn sessions(
        &self,
        Parameters(args): Parameters<SessionsArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        let range = match optional_range(&args.from, &args.to) {
            Ok(range) => range,
            Err(refused) => return Ok(refused),
        };
        let variables = json!({
            "userId": args.user_id,
            "range": range,
            "erroredOnly": args.errored_only,
            "first": args.first,
            "after": args.after,
        });
        Ok(self.run(&extensions, SESSIONS, variables).await)
    }

    #[tool(
        name = "breakdowns",
        description = "Models, providers and tools a user's traces relied on, in [from, to) or \
            over the lifetime: calls, traces, tokens, cost, tool errors. Answers `{breakdowns: \
            {models, providers, tools}}`."
    )]
    async fn breakdowns(
        &self,
        Parameters(args): Parameters<BreakdownsArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        let range = match optional_range(&args.from, &args.to) {
            Ok(range) => range,
            Err(refused) => return Ok(refused),
        };
        let variables = json!({ "userId": args.user_id, "range": range });
        Ok(self.run(&extensions, BREAKDOWNS, variables).await)
    }

    #[tool(
        name = "monitors",
        description = "The project's monitors (threshold alerts on users' figures, delivered \
            by webhook) with how many users each is firing for. Answers `{monitors: [...]}`."
    )]
    async fn monitors(
        &self,
        Parameters(_args): Parameters<MonitorsArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(self.run(&extensions, MONITORS, json!({})).await)
    }

    #[tool(
        name = "monitor_events",
        description = "The monitors' delivery log, newest first: fired and resolved events \
            and their webhook delivery state. Answers `{monitorEvents: {hasNextPage, endCursor, nodes}}`."
    )]
    async fn monitor_events(
        &self,
        Parameters(args): Parameters<MonitorEventsArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        let variables = json!({
            "monitorId": args.monitor_id,
            "first": args.first.unwrap_or(50),
            "before": args.before,
        });
        Ok(self.run(&extensions, MONITOR_EVENTS, variables).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for UserlensTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "End-user analytics of an LLM application (one project): who its users are, \
             how much they use it, what it costs and where it fails. Times are RFC 3339; \
             ranges are [from, to). Errors carry the GraphQL gateway's codes \
             (UNAUTHENTICATED, BAD_USER_INPUT, UNAVAILABLE, INTERNAL).",
        )
    }
}
