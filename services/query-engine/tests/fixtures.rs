//! Hand-computed cases for the points of SPEC §4 that are easy to get subtly wrong.

mod common;

use common::{DAY, HOUR, MINUTE, SECOND};
use userlens_query_engine::{
    IssueLink, ModelUsage, OrderDirection, PeriodUnit, QueryError, RetentionCohort,
    RetentionRequest, SessionsRequest, Snapshot, TimeRange, ToolUsage, TraceRow, UserOrder,
    UserOrderField, UsersRequest,
};

/// 2026-03-01T00:00:00Z, a day boundary.
const T0: i64 = 1_772_323_200 * SECOND;

fn trace(id: u8, start: i64, user: Option<&str>, session: &str) -> TraceRow {
    let mut trace_id = [0u8; 16];
    trace_id[15] = id;
    TraceRow {
        trace_id,
        start_ns: start,
        end_ns: start + SECOND,
        user_id: user.map(str::to_owned),
        email: None,
        session_id: session.to_owned(),
        errored: false,
        cost_nano: 0,
        input_tokens: 0,
        output_tokens: 0,
        cached_input_tokens: 0,
        tool_calls: 0,
        models: Vec::new(),
        tools: Vec::new(),
        issues: Vec::new(),
        behaviours: Vec::new(),
    }
}

fn with_cost(mut t: TraceRow, cost_nano: i64) -> TraceRow {
    t.cost_nano = cost_nano;
    t
}

fn with_email(mut t: TraceRow, email: &str) -> TraceRow {
    t.email = Some(email.to_owned());
    t
}

fn errored(mut t: TraceRow) -> TraceRow {
    t.errored = true;
    t
}

fn snapshot(rows: Vec<TraceRow>) -> Snapshot {
    let mut s = Snapshot::new();
    s.upsert(rows);
    s
}

fn users_request(
    range: TimeRange,
    field: UserOrderField,
    direction: OrderDirection,
) -> UsersRequest {
    UsersRequest {
        order: UserOrder::new(field, direction),
        first: 200,
        trend_buckets: Vec::new(),
        ..UsersRequest::new(range)
    }
}

fn ids(page: &userlens_query_engine::UsersPage) -> Vec<&str> {
    page.rows.iter().map(|r| r.user_id.as_str()).collect()
}

fn field_of<T: std::fmt::Debug>(result: Result<T, QueryError>) -> &'static str {
    result.expect_err("the argument is invalid").field()
}

// ---- histogram (SPEC §4.1) ----

#[test]
fn thirty_days_not_aligned_to_days_use_daily_buckets() {
    let from = T0 + 5 * HOUR;
    let range = TimeRange::new(from, from + 30 * DAY);
    let s = snapshot(vec![
        trace(1, from - 1, Some("a"), "s0"), // before the range, in the first bucket
        trace(2, from, Some("a"), "s1"),
        trace(3, from + 30 * DAY - 1, Some("b"), "s2"),
        trace(4, from + 30 * DAY, Some("b"), "s3"), // at `to`: outside
    ]);
    let overview = s.overview(range).unwrap();
    assert_eq!(overview.histogram.bucket_seconds, 86_400);
    let buckets = &overview.histogram.buckets;
    assert_eq!(buckets.len(), 31);
    assert_eq!(buckets[0].start_ns, T0);
    assert_eq!(buckets[0].traces, 1);
    assert_eq!(buckets[30].start_ns, T0 + 30 * DAY);
    assert_eq!(buckets[30].traces, 1);
    assert_eq!(buckets.iter().map(|b| b.traces).sum::<u64>(), 2);
    assert_eq!(overview.traces, 2);
}

#[test]
fn thirty_aligned_days_use_twelve_hour_buckets() {
    let s = snapshot(vec![trace(1, T0, Some("a"), "s")]);
    let overview = s.overview(TimeRange::new(T0, T0 + 30 * DAY)).unwrap();
    assert_eq!(overview.histogram.bucket_seconds, 12 * 3_600);
    assert_eq!(overview.histogram.buckets.len(), 60);
}

#[test]
fn one_hour_uses_minute_buckets_and_tiny_ranges_one_bucket() {
    let s = snapshot(vec![
        trace(1, T0 + 90 * SECOND, Some("a"), "s"),
        trace(2, T0 + 59 * MINUTE, Some("a"), "s"),
    ]);
    let overview = s.overview(TimeRange::new(T0, T0 + HOUR)).unwrap();
    assert_eq!(overview.histogram.bucket_seconds, 60);
    let buckets = &overview.histogram.buckets;
    assert_eq!(buckets.len(), 60);
    assert_eq!(buckets[1].traces, 1);
    assert_eq!(buckets[59].traces, 1);
    assert_eq!(buckets[1].start_ns, T0 + MINUTE);

    let tiny = s
        .overview(TimeRange::new(T0 + 90 * SECOND, T0 + 90 * SECOND + 1))
        .unwrap();
    assert_eq!(tiny.histogram.bucket_seconds, 60);
    assert_eq!(tiny.histogram.buckets.len(), 1);
    assert_eq!(tiny.histogram.buckets[0].start_ns, T0 + MINUTE);
    assert_eq!(tiny.histogram.buckets[0].traces, 1);
}

#[test]
fn beyond_thirty_day_buckets_use_multiples_of_thirty_days() {
    let s = snapshot(vec![trace(1, T0, Some("a"), "s")]);
    let range = TimeRange::new(T0, T0 + 61 * 30 * DAY);
    assert_eq!(
        s.overview(range).unwrap().histogram.bucket_seconds,
        2 * 30 * 86_400
    );
}

#[test]
fn bucket_distinct_counts_follow_the_window_rule() {
    // Session "s" spans two minute buckets and is errored only in the second.
    let s = snapshot(vec![
        trace(1, T0, Some("a"), "s"),
        trace(2, T0 + 10 * SECOND, Some("b"), "s"),
        errored(trace(3, T0 + MINUTE, Some("a"), "s")),
        errored(trace(4, T0 + MINUTE + SECOND, None, "anon")),
        trace(5, T0 + MINUTE + 2 * SECOND, None, "anon"),
    ]);
    let overview = s.overview(TimeRange::new(T0, T0 + HOUR)).unwrap();
    let b = &overview.histogram.buckets;
    assert_eq!(
        (b[0].traces, b[0].traces_with_user, b[0].active_users),
        (2, 2, 2)
    );
    assert_eq!(
        (b[0].sessions, b[0].errored_sessions, b[0].errored_traces),
        (1, 0, 0)
    );
    assert_eq!(
        (b[1].traces, b[1].traces_with_user, b[1].active_users),
        (3, 1, 1)
    );
    assert_eq!(
        (b[1].sessions, b[1].errored_sessions, b[1].errored_traces),
        (2, 2, 2)
    );
    assert_eq!(overview.unique_users, 2);
    assert_eq!(overview.traces, 5);
    assert_eq!(overview.traces_with_user, 3);
    assert_eq!(overview.user_trace_share, 3.0 / 5.0);
    assert_eq!(overview.traces_per_user, 1.5);
    // "s" and "anon"; only "s" has a user trace; "s" is shared, so it counts for a and b.
    assert_eq!(overview.sessions, 2);
    assert_eq!(overview.sessions_with_user, 1);
    assert_eq!(overview.sessions_per_user, 1.0);
}

#[test]
fn new_users_are_those_whose_first_trace_ever_is_in_range() {
    let s = snapshot(vec![
        trace(1, T0 - DAY, Some("old"), "s1"),
        trace(2, T0 + HOUR, Some("old"), "s2"),
        trace(3, T0 + 2 * HOUR, Some("new"), "s3"),
    ]);
    let overview = s.overview(TimeRange::new(T0, T0 + DAY)).unwrap();
    assert_eq!((overview.unique_users, overview.new_users), (2, 1));
}

// ---- users table (SPEC §4.2) ----

#[test]
fn trend_slices_split_the_range_exactly() {
    // 10 ns range in 3 slices: [0, 3.33) [3.33, 6.67) [6.67, 10).
    let from = T0;
    let s = snapshot(
        (0..10)
            .map(|i| trace(i as u8, from + i, Some("u"), "s"))
            .collect(),
    );
    let request = UsersRequest {
        trend_buckets: vec![3, 1, 10],
        ..UsersRequest::new(TimeRange::new(from, from + 10))
    };
    let page = s.users(&request).unwrap();
    assert_eq!(
        page.rows[0].trends,
        vec![vec![4, 3, 3], vec![10], vec![1; 10]]
    );

    // 30 days in 14 slices: the slice boundary at exactly 15/7 days.
    let to = from + 30 * DAY;
    let boundary = from + (30 * DAY) / 14 + 1; // ceil of 30d / 14 (30d is not a multiple of 14)
    let s = snapshot(vec![
        trace(1, boundary - 1, Some("u"), "s"),
        trace(2, boundary, Some("u"), "s"),
        trace(3, to - 1, Some("u"), "s"),
    ]);
    let page = s
        .users(&UsersRequest::new(TimeRange::new(from, to)))
        .unwrap();
    let mut expected = vec![0u64; 14];
    expected[0] = 1;
    expected[1] = 1;
    expected[13] = 1;
    assert_eq!(page.rows[0].trends, vec![expected]);
}

#[test]
fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
    let s = snapshot(vec![
        with_cost(trace(1, T0, Some("u"), "s"), 10),
        with_cost(trace(2, T0 + 1, Some("u"), "s"), 1),
        with_cost(trace(3, T0 + 2, Some("u"), "s"), 3),
        with_cost(trace(4, T0 + 3, Some("u"), "s"), 2),
    ]);
    let page = s
        .users(&UsersRequest::new(TimeRange::new(T0, T0 + DAY)))
        .unwrap();
    let cost = page.rows[0].cost;
    assert_eq!(cost.median, 2.5e-9);
    assert_eq!(cost.sum, 16e-9);
    assert_eq!(cost.average, 4e-9);
}

#[test]
fn cost_rollup_is_sum_of_sums_mean_of_averages_and_median_of_medians() {
    let rows = vec![
        // a: costs 1, 2 → sum 3, average 1.5, median 1.5
        with_cost(trace(1, T0, Some("a"), "s"), 1),
        with_cost(trace(2, T0 + 1, Some("a"), "s"), 2),
        // b: cost 2 → median 2
        with_cost(trace(3, T0 + 2, Some("b"), "s"), 2),
    ];
    let s = snapshot(rows.clone());
    let range = TimeRange::new(T0, T0 + DAY);
    let page = s.users(&UsersRequest::new(range)).unwrap();
    assert_eq!(page.cost_rollup.sum, 5e-9);
    assert_eq!(page.cost_rollup.average, (1.5e-9 + 2e-9) / 2.0);
    // Medians 1.5 and 2 nano: their median is 1.75 nano, exactly.
    assert_eq!(page.cost_rollup.median, 1.75e-9);

    // With c (median 7): medians 1.5, 2, 7 → 2.
    let mut s = s;
    s.upsert(vec![with_cost(trace(4, T0 + 3, Some("c"), "s"), 7)]);
    let page = s
        .users(&UsersRequest {
            first: 1,
            ..UsersRequest::new(range)
        })
        .unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.total_count, 3);
    assert_eq!(page.cost_rollup.median, 2e-9);

    // No match: all zero.
    let page = s
        .users(&UsersRequest {
            search: Some("zzz".into()),
            ..UsersRequest::new(range)
        })
        .unwrap();
    assert_eq!((page.total_count, page.rows.len()), (0, 0));
    assert_eq!(page.cost_rollup, Default::default());
}

#[test]
fn search_is_literal_and_unicode_case_insensitive() {
    let range = TimeRange::new(T0, T0 + DAY);
    let s = snapshot(vec![
        trace(1, T0, Some("100%_user"), "s"),
        trace(2, T0, Some("100x_user"), "s"),
        trace(3, T0, Some("100xxuser"), "s"),
        trace(4, T0, Some("a\\b"), "s"),
        trace(5, T0, Some("müller"), "s"),
        with_email(trace(6, T0, Some("o'brien"), "s"), "Sean@Example.IE"),
    ]);
    let search = |needle: &str| {
        let request = UsersRequest {
            search: Some(needle.to_owned()),
            ..users_request(range, UserOrderField::UserId, OrderDirection::Asc)
        };
        let page = s.users(&request).unwrap();
        ids(&page)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(search("%"), ["100%_user"]);
    assert_eq!(search("0%_"), ["100%_user"]);
    assert_eq!(search("_"), ["100%_user", "100x_user"]);
    assert_eq!(search("x_"), ["100x_user"]);
    assert_eq!(search("\\"), ["a\\b"]);
    assert_eq!(search("  MÜLLER "), ["müller"]);
    assert_eq!(search("sean@example"), ["o'brien"]);
    assert_eq!(search("O'B"), ["o'brien"]);
    assert_eq!(search("   ").len(), 6);
}

#[test]
fn email_is_the_lifetime_one_even_in_a_range_view() {
    let s = snapshot(vec![
        with_email(trace(1, T0, Some("u"), "s"), "old@example.com"),
        with_email(trace(2, T0 + 2 * DAY, Some("u"), "s"), "new@example.com"),
        trace(3, T0 + 3 * DAY, Some("u"), "s"), // newest, but no email
        with_email(trace(4, T0, Some("v"), "s"), "zz@example.com"),
    ]);
    let day_one = TimeRange::new(T0, T0 + DAY);
    let page = s
        .users(&users_request(
            day_one,
            UserOrderField::Email,
            OrderDirection::Asc,
        ))
        .unwrap();
    assert_eq!(ids(&page), ["u", "v"]);
    assert_eq!(page.rows[0].email.as_deref(), Some("new@example.com"));
    assert_eq!(page.rows[0].traces, 1);
    let found = s
        .users(&UsersRequest {
            search: Some("new@".into()),
            ..UsersRequest::new(day_one)
        })
        .unwrap();
    assert_eq!(ids(&found), ["u"]);
    let old = s
        .users(&UsersRequest {
            search: Some("old@".into()),
            ..UsersRequest::new(day_one)
        })
        .unwrap();
    assert_eq!(old.total_count, 0);

    // Equal times: the larger trace id wins.
    let s = snapshot(vec![
        with_email(trace(9, T0, Some("w"), "s"), "nine@example.com"),
        with_email(trace(8, T0, Some("w"), "s"), "eight@example.com"),
    ]);
    let detail = s.user_detail("w", &[], T0).unwrap().unwrap();
    assert_eq!(detail.email.as_deref(), Some("nine@example.com"));
}

#[test]
fn users_without_email_sort_as_the_empty_string() {
    let range = TimeRange::new(T0, T0 + DAY);
    let s = snapshot(vec![
        with_email(trace(1, T0, Some("a"), "s"), "b@x"),
        trace(2, T0, Some("b"), "s"),
        with_email(trace(3, T0, Some("c"), "s"), "a@x"),
        trace(4, T0, Some("d"), "s"),
    ]);
    let asc = s
        .users(&users_request(
            range,
            UserOrderField::Email,
            OrderDirection::Asc,
        ))
        .unwrap();
    assert_eq!(ids(&asc), ["b", "d", "c", "a"]);
    let desc = s
        .users(&users_request(
            range,
            UserOrderField::Email,
            OrderDirection::Desc,
        ))
        .unwrap();
    assert_eq!(ids(&desc), ["a", "c", "b", "d"]);
}

#[test]
fn ties_break_by_user_id_ascending_in_code_point_order() {
    let range = TimeRange::new(T0, T0 + DAY);
    let s = snapshot(vec![
        with_cost(trace(1, T0, Some("b"), "s"), 5),
        with_cost(trace(2, T0, Some("B"), "s"), 5),
        with_cost(trace(3, T0, Some("a"), "s"), 5),
        with_cost(trace(4, T0, Some("é"), "s"), 5),
        with_cost(trace(5, T0, Some("z"), "s"), 9),
    ]);
    let desc = s
        .users(&users_request(
            range,
            UserOrderField::CostSum,
            OrderDirection::Desc,
        ))
        .unwrap();
    assert_eq!(ids(&desc), ["z", "B", "a", "b", "é"]);
    let asc = s
        .users(&users_request(
            range,
            UserOrderField::CostSum,
            OrderDirection::Asc,
        ))
        .unwrap();
    assert_eq!(ids(&asc), ["B", "a", "b", "é", "z"]);
    let by_id = s
        .users(&users_request(
            range,
            UserOrderField::UserId,
            OrderDirection::Desc,
        ))
        .unwrap();
    assert_eq!(ids(&by_id), ["é", "z", "b", "a", "B"]);
}

#[test]
fn sessions_belong_to_each_user_and_error_rate_counts_sessions() {
    let range = TimeRange::new(T0, T0 + DAY);
    let s = snapshot(vec![
        trace(1, T0, Some("a"), "shared"),
        errored(trace(2, T0 + 1, Some("b"), "shared")),
        trace(3, T0 + 2, Some("a"), "own"),
        errored(trace(4, T0 + 3, Some("a"), "own")),
        trace(5, T0 + 4, Some("a"), "clean"),
    ]);
    let page = s
        .users(&users_request(
            range,
            UserOrderField::UserId,
            OrderDirection::Asc,
        ))
        .unwrap();
    let a = &page.rows[0];
    assert_eq!((a.sessions, a.errored_sessions), (3, 1));
    assert_eq!(a.error_rate, 1.0 / 3.0);
    let b = &page.rows[1];
    assert_eq!((b.sessions, b.errored_sessions, b.error_rate), (1, 1, 1.0));

    let sessions = s.sessions(&SessionsRequest::new("a")).unwrap();
    let shared = sessions
        .rows
        .iter()
        .find(|r| r.session_id == "shared")
        .unwrap();
    // Only a's trace counts in a's copy of the shared session.
    assert_eq!((shared.traces, shared.errored), (1, false));
}

#[test]
fn tokens_order_by_input_plus_output() {
    let range = TimeRange::new(T0, T0 + DAY);
    let mut a = trace(1, T0, Some("a"), "s");
    a.input_tokens = 10;
    a.output_tokens = 1;
    a.cached_input_tokens = 9;
    let mut b = trace(2, T0, Some("b"), "s");
    b.input_tokens = 1;
    b.output_tokens = 20;
    let s = snapshot(vec![a, b]);
    let page = s
        .users(&users_request(
            range,
            UserOrderField::Tokens,
            OrderDirection::Desc,
        ))
        .unwrap();
    assert_eq!(ids(&page), ["b", "a"]);
    assert_eq!(page.rows[1].tokens.total, 11);
    assert_eq!(page.rows[1].tokens.cached_input, 9);
}

// ---- pagination while data changes (SPEC §4.2, §4.7) ----

#[test]
fn users_pages_neither_repeat_nor_skip_when_rows_change_between_pages() {
    let range = TimeRange::new(T0, T0 + DAY);
    let mut s = snapshot(
        (0..6u8)
            .map(|i| trace(i, T0 + i64::from(i) * MINUTE, Some(&format!("u{i}")), "s"))
            .collect(),
    );
    let request = UsersRequest {
        first: 2,
        ..UsersRequest::new(range)
    };
    let page = s.users(&request).unwrap();
    assert_eq!(ids(&page), ["u5", "u4"]);
    assert!(page.has_next_page);
    let cursor = page.rows[1].cursor.clone();

    // Between pages: a brand-new user lands before the cursor, u0 moves ahead of it, u2
    // gets a trace of its own that keeps it after the cursor, and the cursor's own user
    // changes (its old key stays a valid position).
    s.upsert(vec![
        trace(20, T0 + 10 * MINUTE, Some("new"), "s"),
        trace(0, T0 + 9 * MINUTE, Some("u0"), "s"),
        trace(21, T0 + 2 * MINUTE + 1, Some("u2"), "s"),
        trace(4, T0 + 11 * MINUTE, Some("u4"), "s"),
    ]);
    let mut walked = Vec::new();
    let mut after = Some(cursor);
    while let Some(cursor) = after {
        let page = s
            .users(&UsersRequest {
                after: Some(cursor),
                ..request.clone()
            })
            .unwrap();
        walked.extend(ids(&page).into_iter().map(str::to_owned));
        after = page
            .has_next_page
            .then(|| page.rows.last().unwrap().cursor.clone());
    }
    // u3, u2, u1 kept their keys and come exactly once; u0 moved before the cursor.
    assert_eq!(walked, ["u3", "u2", "u1"]);
}

#[test]
fn sessions_pages_continue_after_the_cursor_key() {
    let mut s = snapshot(vec![
        trace(1, T0, Some("u"), "b"),
        trace(2, T0, Some("u"), "a"),
        errored(trace(3, T0 + MINUTE, Some("u"), "c")),
        trace(4, T0 + 2 * MINUTE, Some("u"), "d"),
    ]);
    let request = SessionsRequest {
        first: 2,
        ..SessionsRequest::new("u")
    };
    let page = s.sessions(&request).unwrap();
    let ids: Vec<&str> = page.rows.iter().map(|r| r.session_id.as_str()).collect();
    assert_eq!(ids, ["d", "c"]);
    assert_eq!(page.total_count, 4);
    s.upsert(vec![trace(5, T0 + 3 * MINUTE, Some("u"), "e")]);
    let next = s
        .sessions(&SessionsRequest {
            after: Some(page.rows[1].cursor.clone()),
            ..request.clone()
        })
        .unwrap();
    let ids: Vec<&str> = next.rows.iter().map(|r| r.session_id.as_str()).collect();
    // Same start: session id ascending.
    assert_eq!(ids, ["a", "b"]);
    assert!(!next.has_next_page);
    assert_eq!(next.total_count, 5);

    let errored_only = s
        .sessions(&SessionsRequest {
            errored_only: true,
            ..SessionsRequest::new("u")
        })
        .unwrap();
    assert_eq!(errored_only.total_count, 1);
    assert_eq!(errored_only.rows[0].session_id, "c");
}

// ---- user detail, issues, breakdowns (SPEC §4.3–4.5) ----

#[test]
fn issue_title_comes_from_the_projects_most_recent_trace_giving_one() {
    let link = |title: Option<&str>| IssueLink {
        id: "i1".into(),
        title: title.map(str::to_owned),
    };
    let mut x1 = trace(1, T0, Some("x"), "s1");
    x1.issues = vec![link(Some("old title"))];
    let mut y = trace(2, T0 + HOUR, Some("y"), "s2");
    y.issues = vec![link(Some("newest title"))];
    let mut z = trace(3, T0 + 2 * HOUR, Some("z"), "s3");
    z.issues = vec![link(None)];
    let mut x2 = trace(4, T0 + 30 * MINUTE, Some("x"), "s4");
    x2.issues = vec![link(None)];
    let mut s = snapshot(vec![x1, y, z, x2]);
    let detail = s.user_detail("x", &[], T0).unwrap().unwrap();
    assert_eq!(detail.issues.len(), 1);
    let issue = &detail.issues[0];
    assert_eq!(issue.title.as_deref(), Some("newest title"));
    assert_eq!((issue.traces, issue.sessions), (2, 2));
    assert_eq!(
        (issue.first_seen_ns, issue.last_seen_ns),
        (T0, T0 + 30 * MINUTE)
    );

    // The newest titled trace is re-sent without a title: the next newest title wins.
    let mut y = trace(2, T0 + HOUR, Some("y"), "s2");
    y.issues = vec![link(None)];
    s.upsert(vec![y]);
    let detail = s.user_detail("x", &[], T0).unwrap().unwrap();
    assert_eq!(detail.issues[0].title.as_deref(), Some("old title"));
}

#[test]
fn activity_is_zero_filled_and_ends_on_the_day_of_now() {
    let now = T0 + 3 * DAY + 5 * HOUR;
    let s = snapshot(vec![
        with_cost(trace(1, T0 + 3 * DAY, Some("u"), "s1"), 7),
        errored(trace(2, T0 + 3 * DAY + HOUR, Some("u"), "s1")),
        trace(3, T0 + DAY, Some("u"), "s2"),
        trace(4, T0 + 4 * DAY, Some("u"), "s3"), // after today
        trace(5, T0 - 10 * DAY, Some("u"), "s4"), // before the window
    ]);
    let detail = s.user_detail("u", &[3, 1], now).unwrap().unwrap();
    let today = (T0 + 3 * DAY) / DAY;
    let three = &detail.activities[0];
    assert_eq!(
        three.iter().map(|d| d.day).collect::<Vec<_>>(),
        [today - 2, today - 1, today]
    );
    assert_eq!(three[0].traces, 1);
    assert_eq!(three[1].traces, 0);
    let last = &three[2];
    assert_eq!(
        (
            last.traces,
            last.errored_traces,
            last.sessions,
            last.errored_sessions
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(last.cost, 7e-9);
    assert_eq!(detail.activities[1].len(), 1);
    assert_eq!(detail.activities[1][0], three[2]);
    assert_eq!(detail.active_days, 4);
    assert_eq!(detail.traces, 5);
    assert_eq!(detail.sessions, 4);
    assert_eq!(detail.average_trace_duration_ms, 1_000.0);
}

#[test]
fn unknown_users_and_users_whose_traces_moved_away_have_no_detail() {
    let mut s = snapshot(vec![trace(1, T0, Some("a"), "s")]);
    assert_eq!(s.user_detail("nobody", &[30], T0).unwrap(), None);
    assert!(s.user_detail("a", &[30], T0).unwrap().is_some());
    s.upsert(vec![trace(1, T0, Some("b"), "s")]);
    assert_eq!(s.user_detail("a", &[30], T0).unwrap(), None);
    assert_eq!(s.user_detail("b", &[30], T0).unwrap().unwrap().traces, 1);
    let empty = s.sessions(&SessionsRequest::new("a")).unwrap();
    assert_eq!(
        (empty.rows.len(), empty.total_count, empty.has_next_page),
        (0, 0, false)
    );
    assert_eq!(s.breakdowns("a", None).unwrap(), Default::default());
    let overview = s.overview(TimeRange::new(T0, T0 + DAY)).unwrap();
    assert_eq!((overview.unique_users, overview.new_users), (1, 1));
}

#[test]
fn breakdowns_order_by_calls_then_names_with_null_provider_first() {
    let usage = |model: Option<&str>, provider: Option<&str>, calls: i64| ModelUsage {
        model: model.map(str::to_owned),
        provider: provider.map(str::to_owned),
        calls,
        input_tokens: 10 * calls,
        output_tokens: calls,
        cached_input_tokens: 0,
        cost_nano: 100 * calls,
    };
    let mut t1 = trace(1, T0, Some("u"), "s");
    t1.models = vec![
        usage(None, Some("openai"), 5),
        usage(Some("gpt"), None, 2),
        usage(Some("gpt"), Some("openai"), 2),
    ];
    t1.tools = vec![
        ToolUsage {
            tool: "fetch".into(),
            calls: 1,
            errors: 1,
        },
        ToolUsage {
            tool: "search".into(),
            calls: 3,
            errors: 0,
        },
    ];
    let mut t2 = trace(2, T0 + DAY, Some("u"), "s");
    t2.models = vec![usage(Some("claude"), Some("anthropic"), 1)];
    t2.tools = vec![ToolUsage {
        tool: "fetch".into(),
        calls: 2,
        errors: 0,
    }];
    let s = snapshot(vec![t1, t2]);
    let all = s.breakdowns("u", None).unwrap();
    let models: Vec<(&str, Option<&str>, i64)> = all
        .models
        .iter()
        .map(|m| (m.model.as_str(), m.provider.as_deref(), m.calls))
        .collect();
    assert_eq!(
        models,
        [
            ("gpt", None, 2),
            ("gpt", Some("openai"), 2),
            ("claude", Some("anthropic"), 1)
        ]
    );
    let providers: Vec<(&str, i64, u64)> = all
        .providers
        .iter()
        .map(|p| (p.provider.as_str(), p.calls, p.traces))
        .collect();
    assert_eq!(providers, [("openai", 7, 1), ("anthropic", 1, 1)]);
    assert_eq!(all.providers[0].tokens.input, 70);
    assert_eq!(all.providers[0].cost, 700e-9);
    let tools: Vec<(&str, i64, i64, u64)> = all
        .tools
        .iter()
        .map(|t| (t.tool.as_str(), t.calls, t.errors, t.traces))
        .collect();
    assert_eq!(tools, [("fetch", 3, 1, 2), ("search", 3, 0, 1)]);

    let first_day = s
        .breakdowns("u", Some(TimeRange::new(T0, T0 + DAY)))
        .unwrap();
    assert_eq!(first_day.models.len(), 2);
    assert_eq!(first_day.tools[0].tool, "search");
}

// ---- validation (SPEC §5) ----

#[test]
fn every_invalid_argument_names_its_field() {
    let s = snapshot(vec![trace(1, T0, Some("u"), "s")]);
    let range = TimeRange::new(T0, T0 + DAY);
    let users = |f: &dyn Fn(&mut UsersRequest)| {
        let mut request = UsersRequest::new(range);
        f(&mut request);
        s.users(&request)
    };
    assert_eq!(field_of(users(&|r| r.first = 0)), "first");
    assert_eq!(field_of(users(&|r| r.first = 201)), "first");
    assert!(users(&|r| r.first = 200).is_ok());
    assert_eq!(
        field_of(users(&|r| r.trend_buckets = vec![14, 0])),
        "buckets"
    );
    assert_eq!(field_of(users(&|r| r.trend_buckets = vec![61])), "buckets");
    assert!(users(&|r| r.trend_buckets = vec![1, 60]).is_ok());
    assert_eq!(
        field_of(users(&|r| r.range = TimeRange::new(T0, T0))),
        "range"
    );
    assert_eq!(
        field_of(users(&|r| r.range = TimeRange::new(T0, T0 - 1))),
        "range"
    );
    assert_eq!(
        field_of(users(&|r| r.search = Some("x".repeat(501)))),
        "search"
    );
    assert!(users(&|r| r.search = Some(format!("  {}  ", "ü".repeat(500)))).is_ok());
    assert_eq!(
        field_of(users(&|r| r.after = Some("not a cursor!".into()))),
        "after"
    );
    assert_eq!(field_of(users(&|r| r.after = Some(String::new()))), "after");

    // A cursor from another order, or from the sessions list.
    let page = s.users(&UsersRequest::new(range)).unwrap();
    let cursor = page.rows[0].cursor.clone();
    let other_order = users(&|r| {
        r.after = Some(cursor.clone());
        r.order = UserOrder::new(UserOrderField::LastSeen, OrderDirection::Asc);
    });
    assert_eq!(field_of(other_order), "after");
    let sessions_cursor = s.sessions(&SessionsRequest::new("u")).unwrap().rows[0]
        .cursor
        .clone();
    assert_eq!(
        field_of(users(&|r| r.after = Some(sessions_cursor.clone()))),
        "after"
    );
    let users_in_sessions = s.sessions(&SessionsRequest {
        after: Some(cursor.clone()),
        ..SessionsRequest::new("u")
    });
    assert_eq!(field_of(users_in_sessions), "after");

    assert_eq!(field_of(s.overview(TimeRange::new(T0, T0))), "range");
    assert_eq!(field_of(s.user_detail("u", &[30, 0], T0)), "days");
    assert_eq!(field_of(s.user_detail("nobody", &[366], T0)), "days");
    assert!(s.user_detail("u", &[1, 365], T0).is_ok());
    assert_eq!(
        field_of(s.breakdowns("u", Some(TimeRange::new(T0, T0 - 5)))),
        "range"
    );
    let sessions = |f: &dyn Fn(&mut SessionsRequest)| {
        let mut request = SessionsRequest::new("u");
        f(&mut request);
        s.sessions(&request)
    };
    assert_eq!(field_of(sessions(&|r| r.first = 0)), "first");
    assert_eq!(field_of(sessions(&|r| r.first = 201)), "first");
    assert_eq!(
        field_of(sessions(&|r| r.range = Some(TimeRange::new(T0, T0)))),
        "range"
    );
    assert_eq!(
        field_of(sessions(&|r| r.after = Some("%%%".into()))),
        "after"
    );

    let error = s.overview(TimeRange::new(T0, T0)).unwrap_err();
    assert!(error.to_string().starts_with("invalid range: "), "{error}");
    let error = users(&|r| r.first = 0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid first: must be between 1 and 200, got 0"
    );
}

// ---- retention cohorts (SPEC §4.8) ----

/// T0 (2026-03-01) is a Sunday; 2026-03-02 is a Monday.
const MONDAY: i64 = T0 + DAY;

/// Traces for the retention cases: first traces on both sides of the Monday boundary, a
/// later trace in a week that has not started at "now", and a user who first appears then.
fn retention_rows() -> Vec<TraceRow> {
    vec![
        // a: Sunday 03-01, the last nanosecond of the week of 02-23; then Monday 03-02 00:00.
        trace(1, MONDAY - 1, Some("a"), "a1"),
        trace(2, MONDAY, Some("a"), "a2"),
        // b: Monday 03-02 00:00 exactly, then Monday 03-09 01:00 and Tuesday 03-17.
        trace(3, MONDAY, Some("b"), "b1"),
        trace(4, MONDAY + 7 * DAY + HOUR, Some("b"), "b2"),
        trace(5, MONDAY + 15 * DAY, Some("b"), "b3"),
        // c: Sunday 03-08 23:00, still the week of 03-02.
        trace(6, MONDAY + 6 * DAY + 23 * HOUR, Some("c"), "c1"),
        // d: Tuesday 03-10.
        trace(7, MONDAY + 8 * DAY + 9 * HOUR, Some("d"), "d1"),
        // f: Thursday 04-02, in the week of 03-30.
        trace(8, MONDAY + 31 * DAY, Some("f"), "f1"),
        // Anonymous traces belong to no cohort.
        trace(9, MONDAY + 2 * HOUR, None, "n1"),
    ]
}

fn retention_snapshot() -> Snapshot {
    snapshot(retention_rows())
}

fn cohorts(
    s: &Snapshot,
    range: TimeRange,
    cohort: PeriodUnit,
    periods: u32,
    now_ns: i64,
) -> Vec<(i64, u64, Vec<u64>)> {
    s.retention(&RetentionRequest {
        range,
        cohort,
        periods,
        now_ns,
    })
    .unwrap()
    .into_iter()
    .map(
        |RetentionCohort {
             start_ns,
             users,
             active,
         }| (start_ns, users, active),
    )
    .collect()
}

#[test]
fn weekly_cohorts_start_on_monday_and_stop_at_now() {
    let s = retention_snapshot();
    // Mondays 02-23 … 03-30 start in the range; "now" is Wednesday 03-11 12:00.
    let range = TimeRange::new(MONDAY - 7 * DAY, MONDAY + 35 * DAY);
    let now = MONDAY + 9 * DAY + 12 * HOUR;
    assert_eq!(
        cohorts(&s, range, PeriodUnit::Week, 4, now),
        vec![
            // a alone (Sunday belongs to the week before); active in 03-02's week, not yet in
            // 03-09's, which is in progress and so present; 03-16's has not started.
            (MONDAY - 7 * DAY, 1, vec![1, 1, 0]),
            // b (Monday 00:00) and c (Sunday 23:00): b again in 03-09's week; b's trace of
            // 03-17 is in a week that has not started and counts nowhere.
            (MONDAY, 2, vec![2, 1]),
            // d, in the week in progress.
            (MONDAY + 7 * DAY, 1, vec![1]),
            // The cohorts of 03-16, 03-23 and 03-30 (f's) have not started: absent, not 0.
        ]
    );
    // One period followed: only each cohort's own.
    assert_eq!(
        cohorts(&s, range, PeriodUnit::Week, 1, now),
        vec![
            (MONDAY - 7 * DAY, 1, vec![1]),
            (MONDAY, 2, vec![2]),
            (MONDAY + 7 * DAY, 1, vec![1]),
        ]
    );
    // Now at Monday 03-02 00:00 exactly: that week has started (it is not after now).
    assert_eq!(
        cohorts(&s, range, PeriodUnit::Week, 4, MONDAY),
        vec![(MONDAY - 7 * DAY, 1, vec![1, 1]), (MONDAY, 2, vec![2])]
    );
    // One nanosecond earlier it has not: only the cohort of 02-23, followed for one week.
    assert_eq!(
        cohorts(&s, range, PeriodUnit::Week, 4, MONDAY - 1),
        vec![(MONDAY - 7 * DAY, 1, vec![1])]
    );
    // Later, every week has started: f's cohort appears and b's 03-17 trace counts.
    assert_eq!(
        cohorts(&s, range, PeriodUnit::Week, 4, MONDAY + 60 * DAY),
        vec![
            (MONDAY - 7 * DAY, 1, vec![1, 1, 0, 0]),
            (MONDAY, 2, vec![2, 1, 1, 0]),
            (MONDAY + 7 * DAY, 1, vec![1, 0, 0, 0]),
            (MONDAY + 14 * DAY, 0, vec![0, 0, 0, 0]),
            (MONDAY + 21 * DAY, 0, vec![0, 0, 0, 0]),
            (MONDAY + 28 * DAY, 1, vec![1, 0, 0, 0]),
        ]
    );
    // A range starting on Tuesday holds no cohort of the week it starts in.
    let from_tuesday = TimeRange::new(MONDAY + DAY, MONDAY + 14 * DAY);
    assert_eq!(
        cohorts(&s, from_tuesday, PeriodUnit::Week, 2, now),
        vec![(MONDAY + 7 * DAY, 1, vec![1])]
    );
}

#[test]
fn daily_and_monthly_cohorts_stop_at_now() {
    let s = retention_snapshot();
    let now = MONDAY + 9 * DAY + 12 * HOUR; // Wednesday 03-11 12:00
    // Days 03-09 … 03-13: 03-12 and 03-13 have not started. d's cohort (03-10) is followed
    // on 03-10 and on 03-11, the day in progress.
    let range = TimeRange::new(MONDAY + 7 * DAY, MONDAY + 12 * DAY);
    assert_eq!(
        cohorts(&s, range, PeriodUnit::Day, 8, now),
        vec![
            (MONDAY + 7 * DAY, 0, vec![0, 0, 0]),
            (MONDAY + 8 * DAY, 1, vec![1, 0]),
            (MONDAY + 9 * DAY, 0, vec![0]),
        ]
    );
    // Months February … May 2026: April and May have not started. e's first trace is the
    // last instant of February (T0 − 1), e is back on 03-06; a (Sunday 03-01), b, c and d
    // are March's cohort.
    let mut rows = retention_rows();
    rows.push(trace(20, T0 - 1, Some("e"), "e1"));
    rows.push(trace(21, T0 + 5 * DAY, Some("e"), "e2"));
    let s = snapshot(rows);
    let february = T0 - 28 * DAY;
    let range = TimeRange::new(february, T0 + (31 + 30 + 31) * DAY);
    assert_eq!(
        cohorts(&s, range, PeriodUnit::Month, 6, now),
        vec![(february, 1, vec![1, 1]), (T0, 4, vec![4])]
    );
    // At the first instant of April, April has started: its cohort (f, 04-02: the snapshot's
    // data, whatever its time) is returned and March's is followed into it (nobody of it
    // came back there).
    let april = T0 + 31 * DAY;
    assert_eq!(
        cohorts(&s, range, PeriodUnit::Month, 6, april),
        vec![
            (february, 1, vec![1, 1, 0]),
            (T0, 4, vec![4, 0]),
            (april, 1, vec![1]),
        ]
    );
}

// ---- concurrency ----

#[test]
fn queries_run_concurrently_on_a_shared_snapshot() {
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<Snapshot>();
    let s = snapshot(
        (0..200u8)
            .map(|i| {
                with_cost(
                    trace(
                        i,
                        T0 + i64::from(i) * MINUTE,
                        Some(&format!("u{}", i % 17)),
                        "s",
                    ),
                    i64::from(i),
                )
            })
            .collect(),
    );
    let range = TimeRange::new(T0, T0 + DAY);
    let expected = (
        s.overview(range).unwrap(),
        s.users(&UsersRequest::new(range)).unwrap(),
    );
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..20 {
                    let answer = (
                        s.overview(range).unwrap(),
                        s.users(&UsersRequest::new(range)).unwrap(),
                    );
                    assert_eq!(answer, expected);
                }
            });
        }
    });
}
