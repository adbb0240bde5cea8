//! The `Query` root: each field checks its arguments, then makes its users-query calls.
//!
//! Nested fields that need users-query data (`UserRow.trend`, `UserDetail.activity`,
//! `UserDetail.breakdowns`) are read from the selection before the call, so a page costs one
//! round of calls however many rows and aliases it has.

use async_graphql::{Context, InputType, Lookahead, Object, SelectionField};
use userlens_proto::query::v1 as pb;

use crate::analytics::{ActiveUsers, PeriodUnit, Retention, UserFilter, retention_periods};
use crate::client::{Credentials, QueryClient};
use crate::error::GatewayError;
use crate::model::{
    Breakdowns, RPC_COMPLEXITY, SessionConnection, TimeRangeInput, UserConnection, UserDetail,
    UserOrder, UsersOverview, activity_days, trend_buckets,
};

const MAX_PAGE_SIZE: i32 = 200;
const MAX_SEARCH_CHARS: usize = 500;

pub struct QueryRoot;

pub(crate) fn deps<'a>(
    ctx: &Context<'a>,
) -> Result<(&'a QueryClient, &'a Credentials), GatewayError> {
    let client = ctx
        .data::<QueryClient>()
        .map_err(|_| GatewayError::Internal("schema built without a users-query client".into()))?;
    // The HTTP handler refuses requests without a key, so this only trips when the schema is
    // executed some other way.
    let credentials = ctx
        .data::<Credentials>()
        .map_err(|_| GatewayError::Unauthenticated)?;
    Ok((client, credentials))
}

fn page_size(first: Option<i32>) -> Result<u32, GatewayError> {
    let first = first.unwrap_or(50);
    match u32::try_from(first) {
        Ok(n) if (1..=MAX_PAGE_SIZE.unsigned_abs()).contains(&n) => Ok(n),
        _ => Err(GatewayError::bad_input(
            "first",
            format!("`first` must be between 1 and {MAX_PAGE_SIZE}, got {first}"),
        )),
    }
}

pub(crate) fn search_text(search: Option<String>) -> Result<String, GatewayError> {
    let search = search.unwrap_or_default();
    let trimmed = search.trim();
    let chars = trimmed.chars().count();
    if chars > MAX_SEARCH_CHARS {
        return Err(GatewayError::bad_input(
            "search",
            format!("`search` must be at most {MAX_SEARCH_CHARS} characters, got {chars}"),
        ));
    }
    Ok(trimmed.to_owned())
}

fn optional_range(range: Option<TimeRangeInput>) -> Result<Option<pb::TimeRange>, GatewayError> {
    range
        .map(|r| r.validated("range").map(TimeRangeInput::to_proto))
        .transpose()
}

/// The value of `name` on a selected field, variables resolved; absent and null are `None`.
fn argument<T: InputType>(
    field: &SelectionField<'_>,
    name: &str,
) -> Result<Option<T>, GatewayError> {
    let arguments = field
        .arguments()
        .map_err(|error| GatewayError::bad_input(name, error.message))?;
    let Some((_, value)) = arguments.into_iter().find(|(n, _)| n.as_str() == name) else {
        return Ok(None);
    };
    if value == async_graphql::Value::Null {
        return Ok(None);
    }
    T::parse(Some(value)).map(Some).map_err(|error| {
        GatewayError::bad_input(
            name,
            error
                .into_server_error(async_graphql::Pos::default())
                .message,
        )
    })
}

/// Distinct values of `name` over every selection of a field, in first-seen order.
fn distinct_arguments<T, U: PartialEq>(
    fields: &[SelectionField<'_>],
    name: &str,
    check: impl Fn(Option<T>) -> Result<U, GatewayError>,
) -> Result<Vec<U>, GatewayError>
where
    T: InputType,
{
    let mut values = Vec::new();
    for field in fields {
        let value = check(argument::<T>(field, name)?)?;
        if !values.contains(&value) {
            values.push(value);
        }
    }
    Ok(values)
}

/// The distinct series values of one field, at most as many as users-query accepts.
fn capped_series(values: Vec<u32>, name: &str) -> Result<Vec<u32>, GatewayError> {
    let max = userlens_query_engine::MAX_SERIES_PER_REQUEST;
    if values.len() > max {
        return Err(GatewayError::bad_input(
            name,
            format!(
                "at most {max} distinct `{name}` values per query, got {}",
                values.len()
            ),
        ));
    }
    Ok(values)
}

/// Every `trend(buckets:)` under `edges.node` and `nodes`, aliases and fragments included.
fn requested_trend_buckets(users: &Lookahead<'_>) -> Result<Vec<u32>, GatewayError> {
    let mut trends = users
        .field("edges")
        .field("node")
        .field("trend")
        .selection_fields();
    trends.extend(users.field("nodes").field("trend").selection_fields());
    capped_series(
        distinct_arguments::<i32, _>(&trends, "buckets", trend_buckets)?,
        "buckets",
    )
}

/// Whether any row of the page selects `previousPeriod`.
fn previous_period_requested(users: &Lookahead<'_>) -> bool {
    users
        .field("edges")
        .field("node")
        .field("previousPeriod")
        .exists()
        || users.field("nodes").field("previousPeriod").exists()
}

/// Every `activity(days:)` selected on a user detail.
fn requested_activity_days(detail: &Lookahead<'_>) -> Result<Vec<u32>, GatewayError> {
    capped_series(
        distinct_arguments::<i32, _>(
            &detail.field("activity").selection_fields(),
            "days",
            activity_days,
        )?,
        "days",
    )
}

/// Every `breakdowns(range:)` selected on a user detail; `None` is the lifetime.
fn requested_breakdown_ranges(
    detail: &Lookahead<'_>,
) -> Result<Vec<Option<TimeRangeInput>>, GatewayError> {
    distinct_arguments::<TimeRangeInput, _>(
        &detail.field("breakdowns").selection_fields(),
        "range",
        |range| range.map(|r| r.validated("range")).transpose(),
    )
}

/// `usersOverview(range:)` for a checked range: one `GetUsersOverview` call.
pub(crate) async fn users_overview(
    client: &QueryClient,
    credentials: &Credentials,
    range: TimeRangeInput,
) -> Result<UsersOverview, GatewayError> {
    let overview = client
        .users_overview(
            credentials,
            pb::GetUsersOverviewRequest {
                range: Some(range.to_proto()),
            },
        )
        .await?;
    UsersOverview::from_proto(overview, range)
}

/// What a `UserDetail` selection needs from users-query beyond the profile.
#[derive(Debug, Clone)]
pub(crate) struct UserDetailSelection {
    activity_days: Vec<u32>,
    breakdown_ranges: Vec<Option<TimeRangeInput>>,
}

impl UserDetailSelection {
    pub(crate) fn of(detail: &Lookahead<'_>) -> Result<Self, GatewayError> {
        Ok(Self {
            activity_days: requested_activity_days(detail)?,
            breakdown_ranges: requested_breakdown_ranges(detail)?,
        })
    }
}

/// `userDetail(userId:)`: one `GetUserDetail` call and, concurrently, one `GetBreakdowns`
/// per distinct range selected.
pub(crate) async fn user_detail(
    client: &QueryClient,
    credentials: &Credentials,
    user_id: &str,
    selection: &UserDetailSelection,
) -> Result<Option<UserDetail>, GatewayError> {
    let detail = client.user_detail(
        credentials,
        pb::GetUserDetailRequest {
            user_id: user_id.to_owned(),
            activity_days: selection.activity_days.clone(),
        },
    );
    let breakdowns =
        futures::future::try_join_all(selection.breakdown_ranges.iter().map(|range| {
            let request = pb::GetBreakdownsRequest {
                user_id: user_id.to_owned(),
                range: range.map(TimeRangeInput::to_proto),
            };
            async move {
                let breakdowns = client.breakdowns(credentials, request).await?;
                Ok::<_, GatewayError>((*range, Breakdowns::from(breakdowns)))
            }
        }));
    let (detail, breakdowns) = futures::future::try_join(detail, breakdowns).await?;
    match detail.user {
        Some(user) => Ok(Some(UserDetail::from_proto(user, breakdowns)?)),
        None => Ok(None),
    }
}

#[Object]
impl QueryRoot {
    /// Users, traces and sessions in a time range, with an activity histogram.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn users_overview(
        &self,
        ctx: &Context<'_>,
        range: TimeRangeInput,
    ) -> async_graphql::Result<UsersOverview> {
        let range = range.validated("range")?;
        let (client, credentials) = deps(ctx)?;
        Ok(users_overview(client, credentials, range).await?)
    }

    /// One page of the users with a trace in `range`. `search`: case-insensitive substring of
    /// the user id or email, trimmed, at most 500 characters. `orderBy`: default
    /// `LAST_SEEN DESC`. `first`: page size, 1–200. `after`: an edge's `cursor` or
    /// `pageInfo.endCursor` of the previous page. `filter`: conditions the users must meet
    /// (a cursor is valid with the same filter).
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    #[allow(clippy::too_many_arguments)] // the GraphQL arguments of `users`
    async fn users(
        &self,
        ctx: &Context<'_>,
        range: TimeRangeInput,
        search: Option<String>,
        order_by: Option<UserOrder>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
        filter: Option<UserFilter>,
    ) -> async_graphql::Result<UserConnection> {
        let range = range.validated("range")?;
        let search = search_text(search)?;
        let first = page_size(first)?;
        let filter = filter.map(|f| f.to_proto()).transpose()?;
        let trend_buckets = requested_trend_buckets(&ctx.look_ahead())?;
        let previous_period = previous_period_requested(&ctx.look_ahead());
        let (order_field, order_direction) = UserOrder::to_proto(order_by);
        let (client, credentials) = deps(ctx)?;
        let page = client
            .list_users(
                credentials,
                pb::ListUsersRequest {
                    range: Some(range.to_proto()),
                    search,
                    order_field: order_field.into(),
                    order_direction: order_direction.into(),
                    first: Some(first),
                    after: after.unwrap_or_default(),
                    trend_buckets,
                    filter,
                    previous_period,
                },
            )
            .await?;
        Ok(UserConnection::try_from(page)?)
    }

    /// Retention cohorts: the users whose first trace ever falls in each `cohort` period
    /// starting in `range`, oldest first, and how many of them had a trace in each of the
    /// `periods` periods from their own on (1–60). UTC; weeks start on Monday. Periods not
    /// yet started are left out. At most 400 cohort periods in `range`.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn retention(
        &self,
        ctx: &Context<'_>,
        range: TimeRangeInput,
        cohort: PeriodUnit,
        #[graphql(default = 8)] periods: Option<i32>,
    ) -> async_graphql::Result<Retention> {
        let range = range.validated("range")?;
        let periods = retention_periods(periods)?;
        let (client, credentials) = deps(ctx)?;
        let retention = client
            .retention(
                credentials,
                pb::GetRetentionRequest {
                    range: Some(range.to_proto()),
                    cohort: cohort.to_proto().into(),
                    periods: Some(periods),
                },
            )
            .await?;
        Ok(Retention::try_from(retention)?)
    }

    /// Distinct users with a trace per `window` (UTC days, ISO weeks, calendar months) from
    /// the window holding `range.from` to the one holding the last instant before
    /// `range.to` (at most 400), and the range's stickiness.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn active_users(
        &self,
        ctx: &Context<'_>,
        range: TimeRangeInput,
        window: PeriodUnit,
    ) -> async_graphql::Result<ActiveUsers> {
        let range = range.validated("range")?;
        let (client, credentials) = deps(ctx)?;
        let active = client
            .active_users(
                credentials,
                pb::GetActiveUsersRequest {
                    range: Some(range.to_proto()),
                    window: window.to_proto().into(),
                },
            )
            .await?;
        Ok(ActiveUsers::try_from(active)?)
    }

    /// A user's lifetime profile; null when the user has no trace.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn user_detail(
        &self,
        ctx: &Context<'_>,
        user_id: String,
    ) -> async_graphql::Result<Option<UserDetail>> {
        let selection = UserDetailSelection::of(&ctx.look_ahead())?;
        let (client, credentials) = deps(ctx)?;
        Ok(user_detail(client, credentials, &user_id, &selection).await?)
    }

    /// One page of a user's sessions, newest first; lifetime when `range` is absent.
    /// `erroredOnly`: only sessions with an errored trace. `first` and `after` as on `users`.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        range: Option<TimeRangeInput>,
        #[graphql(default_with = "Some(false)")] errored_only: Option<bool>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<SessionConnection> {
        let range = optional_range(range)?;
        let first = page_size(first)?;
        let (client, credentials) = deps(ctx)?;
        let page = client
            .list_sessions(
                credentials,
                pb::ListSessionsRequest {
                    user_id,
                    range,
                    errored_only: errored_only.unwrap_or(false),
                    first: Some(first),
                    after: after.unwrap_or_default(),
                },
            )
            .await?;
        Ok(SessionConnection::try_from(page)?)
    }

    /// Models, providers and tools of a user's traces; lifetime when `range` is absent.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn breakdowns(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        range: Option<TimeRangeInput>,
    ) -> async_graphql::Result<Breakdowns> {
        let range = optional_range(range)?;
        let (client, credentials) = deps(ctx)?;
        let breakdowns = client
            .breakdowns(credentials, pb::GetBreakdownsRequest { user_id, range })
            .await?;
        Ok(Breakdowns::from(breakdowns))
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{ComplexObject, EmptyMutation, EmptySubscription, Schema, SimpleObject};

    use super::*;

    /// A schema with the shape the look-ahead walks (`edges.node.trend`, `nodes.trend`,
    /// `activity`, `breakdowns`), whose resolvers report what the look-ahead found.
    mod shape {
        use super::*;

        #[derive(SimpleObject, Default)]
        #[graphql(complex)]
        pub struct Row {
            pub id: i32,
        }

        #[ComplexObject]
        impl Row {
            async fn trend(&self, buckets: Option<i32>) -> i32 {
                buckets.unwrap_or_default()
            }
        }

        #[derive(SimpleObject, Default)]
        pub struct Edge {
            pub node: Row,
        }

        #[derive(SimpleObject, Default)]
        pub struct Page {
            pub edges: Vec<Edge>,
            pub nodes: Vec<Row>,
            pub requested: Vec<u32>,
        }

        #[derive(SimpleObject, Default)]
        #[graphql(complex)]
        pub struct Detail {
            pub requested_days: Vec<u32>,
            pub requested_ranges: Vec<String>,
        }

        #[ComplexObject]
        impl Detail {
            async fn activity(&self, days: Option<i32>) -> i32 {
                days.unwrap_or_default()
            }

            async fn breakdowns(&self, range: Option<TimeRangeInput>) -> bool {
                range.is_some()
            }
        }

        pub struct Root;

        #[Object]
        impl Root {
            async fn users(&self, ctx: &Context<'_>) -> async_graphql::Result<Page> {
                Ok(Page {
                    edges: vec![Edge::default()],
                    nodes: vec![Row::default()],
                    requested: requested_trend_buckets(&ctx.look_ahead())?,
                })
            }

            async fn detail(&self, ctx: &Context<'_>) -> async_graphql::Result<Detail> {
                let selection = ctx.look_ahead();
                let ranges = requested_breakdown_ranges(&selection)?;
                Ok(Detail {
                    requested_days: requested_activity_days(&selection)?,
                    requested_ranges: ranges
                        .into_iter()
                        .map(|r| match r {
                            Some(r) => format!("{}/{}", r.from.to_rfc3339(), r.to.to_rfc3339()),
                            None => "lifetime".to_owned(),
                        })
                        .collect(),
                })
            }
        }
    }

    async fn run(query: &str, variables: serde_json::Value) -> serde_json::Value {
        let schema = Schema::new(shape::Root, EmptyMutation, EmptySubscription);
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables));
        let response = schema.execute(request).await;
        serde_json::to_value(&response).unwrap_or_default()
    }

    #[tokio::test]
    async fn trend_look_ahead_collects_every_distinct_bucket_count() {
        let body = run(
            "query($b: Int, $skip: Boolean!) {
               users {
                 requested
                 edges { node { trend a: trend(buckets: 30) ...Row } }
                 nodes { b: trend(buckets: $b) c: trend(buckets: 30) d: trend(buckets: null) }
                 ... on Page { nodes { e: trend(buckets: 7) } }
                 nodes @skip(if: $skip) { f: trend(buckets: 99) }
               }
             }
             fragment Row on Row { g: trend(buckets: 60) }",
            serde_json::json!({ "b": 1, "skip": true }),
        )
        .await;
        assert_eq!(
            body["data"]["users"]["requested"],
            serde_json::json!([14, 30, 60, 1, 7]),
            "{body}"
        );

        let body = run("{ users { requested } }", serde_json::json!({})).await;
        assert_eq!(
            body["data"]["users"]["requested"],
            serde_json::json!([]),
            "{body}"
        );

        let body = run(
            "query($skip: Boolean!) { users { requested nodes @skip(if: $skip) { trend(buckets: 99) } } }",
            serde_json::json!({ "skip": false }),
        )
        .await;
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "buckets",
            "{body}"
        );
    }

    #[tokio::test]
    async fn more_distinct_series_than_users_query_takes_are_refused() {
        let max = userlens_query_engine::MAX_SERIES_PER_REQUEST;
        let trends = |count: usize| -> String {
            (1..=count)
                .map(|b| format!("t{b}: trend(buckets: {b}) "))
                .collect()
        };
        let body = run(
            &format!("{{ users {{ requested nodes {{ {} }} }} }}", trends(max)),
            serde_json::json!({}),
        )
        .await;
        assert_eq!(
            body["data"]["users"]["requested"].as_array().map(Vec::len),
            Some(max),
            "{body}"
        );
        let body = run(
            &format!(
                "{{ users {{ requested nodes {{ {} }} }} }}",
                trends(max + 1)
            ),
            serde_json::json!({}),
        )
        .await;
        assert_eq!(
            body["errors"][0]["extensions"]["field"], "buckets",
            "{body}"
        );
        let days: String = (1..=max + 1)
            .map(|d| format!("d{d}: activity(days: {d}) "))
            .collect();
        let body = run(
            &format!("{{ detail {{ requestedDays {days} }} }}"),
            serde_json::json!({}),
        )
        .await;
        assert_eq!(body["errors"][0]["extensions"]["field"], "days", "{body}");
    }

    #[tokio::test]
    async fn detail_look_ahead_collects_activity_days_and_breakdown_ranges() {
        let body = run(
            r#"query($r: TimeRangeInput) {
                 detail {
                   requestedDays requestedRanges
                   activity a: activity(days: 7) b: activity(days: 30) c: activity(days: 365)
                   breakdowns x: breakdowns(range: $r)
                   y: breakdowns(range: { from: "2026-11-01T01:00:00+01:00", to: "2026-11-02T00:00:00Z" })
                 }
               }"#,
            serde_json::json!({ "r": { "from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z" } }),
        )
        .await;
        let detail = &body["data"]["detail"];
        assert_eq!(
            detail["requestedDays"],
            serde_json::json!([30, 7, 365]),
            "{body}"
        );
        // The same range written with another offset is the same range: one call.
        assert_eq!(
            detail["requestedRanges"],
            serde_json::json!([
                "lifetime",
                "2026-11-01T00:00:00.000Z/2026-11-02T00:00:00.000Z"
            ]),
            "{body}"
        );

        let body = run(
            "{ detail { requestedDays requestedRanges } }",
            serde_json::json!({}),
        )
        .await;
        assert_eq!(
            body["data"]["detail"]["requestedDays"],
            serde_json::json!([])
        );
        assert_eq!(
            body["data"]["detail"]["requestedRanges"],
            serde_json::json!([])
        );

        let body = run(
            r#"{ detail { requestedDays breakdowns(range: { from: "2026-11-02T00:00:00Z", to: "2026-11-01T00:00:00Z" }) } }"#,
            serde_json::json!({}),
        )
        .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
        assert_eq!(body["errors"][0]["extensions"]["field"], "range", "{body}");
    }

    #[test]
    fn page_size_is_1_to_200_with_null_as_default() {
        assert_eq!(page_size(None).ok(), Some(50));
        assert_eq!(page_size(Some(1)).ok(), Some(1));
        assert_eq!(page_size(Some(200)).ok(), Some(200));
        for bad in [0, -1, 201, i32::MIN, i32::MAX] {
            assert!(matches!(
                page_size(Some(bad)),
                Err(GatewayError::BadUserInput { field: Some(f), .. }) if f == "first"
            ));
        }
    }

    #[test]
    fn search_is_trimmed_and_counted_in_characters() {
        assert_eq!(search_text(None).ok().as_deref(), Some(""));
        assert_eq!(
            search_text(Some("  Müller ".into())).ok().as_deref(),
            Some("Müller")
        );
        let five_hundred = "ü".repeat(500);
        assert!(search_text(Some(format!("  {five_hundred}  "))).is_ok());
        assert!(search_text(Some(format!("{five_hundred}x"))).is_err());
    }
}
