//! Properties: on random small projects, every query of the engine equals the brute-force
//! reference of `common`, including after traces are replaced (new start, user, session).

mod common;

use common::{DAY, HOUR, MINUTE, Reference, SECOND};
use proptest::prelude::*;
use userlens_query_engine::{
    IssueLink, ModelUsage, OrderDirection, PeriodUnit, RetentionRequest, SessionsRequest, Snapshot,
    TimeRange, ToolUsage, TraceRow, UserFilter, UserOrder, UserOrderField, UsersRequest,
};

/// 2026-03-01T00:00:00Z.
const BASE: i64 = 1_772_323_200 * SECOND;

const USERS: &[Option<&str>] = &[
    None,
    None,
    Some("alice"),
    Some("Bob"),
    Some("100%_user"),
    Some("o'brien"),
    Some("MÜLLER"),
    Some("müller"),
    Some("x\\y"),
    Some("a_b"),
    Some(""),
];
const EMAILS: &[Option<&str>] = &[
    None,
    None,
    Some("alice@example.com"),
    Some("ALICE@Example.COM"),
    Some("müller@bücher.de"),
    Some("o'brien@x.ie"),
    Some("100%@pct.io"),
    Some(""),
];
const SESSIONS: &[&str] = &["s1", "s2", "s3", "S1", "shared", "0123456789abcdef"];
const MODELS: &[Option<&str>] = &[None, Some("gpt-4o"), Some("claude"), Some("Claude")];
const PROVIDERS: &[Option<&str>] = &[None, Some("openai"), Some("anthropic")];
const TOOLS: &[&str] = &["search", "fetch", "Search"];
const ISSUES: &[&str] = &["i1", "i2", "I3"];
const TITLES: &[Option<&str>] = &[None, Some("Slow answer"), Some("Wrong tool"), Some("")];
const BEHAVIOURS: &[&str] = &["b1", "b2", "B3"];
const SEARCHES: &[Option<&str>] = &[
    None,
    Some(""),
    Some("   "),
    Some("%"),
    Some("_"),
    Some("\\"),
    Some("ü"),
    Some("MÜ"),
    Some("o'"),
    Some("100"),
    Some(" ALICE "),
    Some("example"),
    Some("@"),
    Some("b"),
];

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

fn opt_string(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

fn trace_id(n: u8) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = n % 3;
    id[15] = n;
    id
}

prop_compose! {
    fn model_usage()(
        model in pick(MODELS),
        provider in pick(PROVIDERS),
        calls in 1i64..4,
        input in 0i64..100,
        output in 0i64..100,
        cost in 0i64..1_000,
    ) -> ModelUsage {
        ModelUsage {
            model: opt_string(model),
            provider: opt_string(provider),
            calls,
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: input / 3,
            cost_nano: cost,
        }
    }
}

prop_compose! {
    fn extras()(
        models in prop::collection::vec(model_usage(), 0..4),
        tools in prop::collection::vec((pick(TOOLS), 1i64..3, 0i64..2), 0..3),
        issues in prop::collection::vec((pick(ISSUES), pick(TITLES)), 0..3),
        behaviours in prop::collection::vec(pick(BEHAVIOURS), 0..3),
    ) -> (Vec<ModelUsage>, Vec<ToolUsage>, Vec<IssueLink>, Vec<String>) {
        let mut models = models;
        models.sort_by(|a, b| (&a.model, &a.provider).cmp(&(&b.model, &b.provider)));
        models.dedup_by(|a, b| (&a.model, &a.provider) == (&b.model, &b.provider));
        let mut tools: Vec<ToolUsage> = tools
            .into_iter()
            .map(|(tool, calls, errors)| ToolUsage { tool: tool.to_owned(), calls, errors: errors.min(calls) })
            .collect();
        tools.sort_by(|a, b| a.tool.cmp(&b.tool));
        tools.dedup_by(|a, b| a.tool == b.tool);
        let mut issues: Vec<IssueLink> = issues
            .into_iter()
            .map(|(id, title)| IssueLink { id: id.to_owned(), title: opt_string(title) })
            .collect();
        issues.sort_by(|a, b| a.id.cmp(&b.id));
        issues.dedup_by(|a, b| a.id == b.id);
        let mut behaviours: Vec<String> = behaviours.into_iter().map(str::to_owned).collect();
        behaviours.sort();
        behaviours.dedup();
        (models, tools, issues, behaviours)
    }
}

prop_compose! {
    /// A trace in one of 80 slots `step` apart from `BASE`.
    fn trace_row(ids: u8, step: i64)(
        id in 0u8..ids,
        slot in 0i64..80,
        duration in prop_oneof![Just(0i64), 0i64..10 * SECOND],
        user in pick(USERS),
        email in pick(EMAILS),
        session in pick(SESSIONS),
        errored in prop::bool::weighted(0.3),
        cost in prop_oneof![Just(0i64), 0i64..20, 1_000i64..2_000_000_000],
        input in 0i64..500,
        output in 0i64..500,
        extras in extras(),
    ) -> TraceRow {
        let start = BASE + slot * step;
        let (models, tools, issues, behaviours) = extras;
        TraceRow {
            trace_id: trace_id(id),
            start_ns: start,
            end_ns: start + duration,
            user_id: opt_string(user),
            email: opt_string(email),
            session_id: session.to_owned(),
            errored,
            cost_nano: cost,
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: input / 2,
            tool_calls: tools.iter().map(|t| t.calls).sum(),
            models,
            tools,
            issues,
            behaviours,
        }
    }
}

/// 37-minute slots over two days give equal start times and unaligned buckets.
const SLOT: i64 = 37 * MINUTE;
/// 17-hour slots over 56 days cross days, weeks (Mondays) and months (March to April).
const WIDE_SLOT: i64 = 17 * HOUR;

/// Larger projects in many batches, for longer merges and runs of replacements.
fn big_batches() -> impl Strategy<Value = Vec<Vec<TraceRow>>> {
    prop::collection::vec(prop::collection::vec(trace_row(250, SLOT), 0..120), 2..8)
}

/// Up to four upsert batches; trace ids repeat across and within batches.
fn batches() -> impl Strategy<Value = Vec<Vec<TraceRow>>> {
    prop::collection::vec(prop::collection::vec(trace_row(40, SLOT), 0..25), 1..5)
}

/// Like `batches`, with traces spread over weeks, for cohorts and calendar windows.
fn wide_batches() -> impl Strategy<Value = Vec<Vec<TraceRow>>> {
    prop::collection::vec(prop::collection::vec(trace_row(60, WIDE_SLOT), 0..40), 1..4)
}

fn build(batches: &[Vec<TraceRow>]) -> (Snapshot, Reference) {
    let mut snapshot = Snapshot::new();
    let mut reference = Reference::default();
    for batch in batches {
        snapshot.upsert(batch.clone());
        reference.upsert(batch.clone());
    }
    (snapshot, reference)
}

fn range() -> impl Strategy<Value = TimeRange> {
    (
        -20i64..300,
        prop_oneof![
            1i64..1_000,
            MINUTE..3 * HOUR,
            HOUR..3 * DAY,
            20 * DAY..31 * DAY,
            (59 * 30 * DAY)..(200 * 30 * DAY),
        ],
    )
        .prop_map(|(a, len)| {
            let from = BASE + a * 11 * MINUTE - 7 * SECOND;
            TimeRange::new(from, from + len)
        })
}

/// Ranges whose ends (and their previous period's start) fall on trace slots, so that
/// traces sit exactly on every boundary.
fn slot_range() -> impl Strategy<Value = TimeRange> {
    (-5i64..85, 1i64..40).prop_map(|(k, m)| TimeRange::new(BASE + k * SLOT, BASE + (k + m) * SLOT))
}

/// Ranges for calendar queries: some aligned to days, from hours to a year and more.
fn calendar_range() -> impl Strategy<Value = TimeRange> {
    (
        -10i64..70,
        any::<bool>(),
        prop_oneof![HOUR..3 * DAY, DAY..60 * DAY, 300 * DAY..500 * DAY],
    )
        .prop_map(|(day, aligned, len)| {
            let from = BASE + day * DAY + if aligned { 0 } else { 5 * HOUR + 13 };
            TimeRange::new(from, from + len)
        })
}

fn unit() -> impl Strategy<Value = PeriodUnit> {
    pick(&[PeriodUnit::Day, PeriodUnit::Week, PeriodUnit::Month])
}

/// Mostly no condition, so that conditions combined still select someone.
fn names(known: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    let values = prop::collection::vec(
        prop_oneof![4 => pick(known), 1 => Just("nope")].prop_map(str::to_owned),
        1..3,
    );
    prop_oneof![3 => Just(Vec::new()), 1 => values]
}

const COST_BOUNDS: &[Option<f64>] = &[
    None,
    None,
    None,
    None,
    Some(0.0),
    Some(0.000_000_01),
    Some(0.000_000_019_6),
    Some(0.5),
    Some(1.0),
    Some(2.5),
];

fn filter() -> impl Strategy<Value = UserFilter> {
    (
        pick(COST_BOUNDS),
        pick(COST_BOUNDS),
        prop::bool::weighted(0.2),
        names(&["gpt-4o", "claude", "Claude"]),
        names(&["openai", "anthropic"]),
        names(TOOLS),
        prop::option::weighted(0.2, prop_oneof![pick(ISSUES), Just("nope")]),
        prop::option::weighted(0.2, prop_oneof![pick(BEHAVIOURS), Just("nope")]),
        prop::option::weighted(0.3, any::<bool>()),
    )
        .prop_map(
            |(min, max, errored_only, models, providers, tools, issue, behaviour, has_email)| {
                UserFilter {
                    min_cost_sum: min,
                    max_cost_sum: max,
                    errored_only,
                    models,
                    providers,
                    tools,
                    issue_id: issue.map(str::to_owned),
                    behaviour: behaviour.map(str::to_owned),
                    has_email,
                }
            },
        )
}

fn min_above_max(filter: &UserFilter) -> bool {
    matches!((filter.min_cost_sum, filter.max_cost_sum), (Some(min), Some(max)) if min > max)
}

fn order() -> impl Strategy<Value = UserOrder> {
    (
        pick(&UserOrderField::ALL),
        pick(&[OrderDirection::Asc, OrderDirection::Desc]),
    )
        .prop_map(|(field, direction)| UserOrder { field, direction })
}

fn users_of(reference: &Reference) -> Vec<String> {
    let mut users: Vec<String> = USERS.iter().flatten().map(|u| u.to_string()).collect();
    users.push("nobody".into());
    users.extend(reference.user_ids());
    users.sort();
    users.dedup();
    users
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn overview_matches(batches in batches(), range in range()) {
        let (snapshot, reference) = build(&batches);
        prop_assert_eq!(snapshot.len(), reference.traces.len());
        prop_assert_eq!(snapshot.overview(range).unwrap(), reference.overview(range));
    }

    #[test]
    fn users_pages_walk_the_reference_order(
        batches in batches(),
        range in range(),
        search in pick(SEARCHES),
        order in order(),
        first in 1u32..5,
        trend_buckets in prop::collection::vec(1u32..=60, 0..3),
    ) {
        let (snapshot, reference) = build(&batches);
        let expected = reference.users(range, search, order, &trend_buckets);
        let mut request = UsersRequest {
            range,
            search: opt_string(search),
            order,
            first,
            after: None,
            trend_buckets: trend_buckets.clone(),
            filter: Default::default(),
            previous_period: false,
        };
        let mut walked = Vec::new();
        loop {
            let page = snapshot.users(&request).unwrap();
            prop_assert_eq!(page.total_count, expected.rows.len() as u64);
            prop_assert_eq!(page.cost_rollup, expected.cost_rollup);
            prop_assert!(page.rows.len() <= first as usize);
            let cursor = page.rows.last().map(|r| r.cursor.clone());
            walked.extend(page.rows.into_iter().map(|mut r| { r.cursor.clear(); r }));
            prop_assert_eq!(page.has_next_page, walked.len() < expected.rows.len());
            if !page.has_next_page {
                break;
            }
            request.after = cursor;
        }
        prop_assert_eq!(walked, expected.rows);
    }

    #[test]
    fn user_detail_matches(
        batches in batches(),
        days in prop::collection::vec(1u32..=365, 0..3),
        now_offset in -2i64..5,
    ) {
        let (snapshot, reference) = build(&batches);
        let now = BASE + now_offset * DAY + 5 * HOUR;
        for user in users_of(&reference) {
            prop_assert_eq!(
                snapshot.user_detail(&user, &days, now).unwrap(),
                reference.user_detail(&user, &days, now),
                "user {:?}", user
            );
        }
    }

    #[test]
    fn breakdowns_match(batches in batches(), range in prop::option::of(range())) {
        let (snapshot, reference) = build(&batches);
        for user in users_of(&reference) {
            prop_assert_eq!(
                snapshot.breakdowns(&user, range).unwrap(),
                reference.breakdowns(&user, range),
                "user {:?}", user
            );
        }
    }

    #[test]
    fn sessions_pages_walk_the_reference_order(
        batches in batches(),
        range in prop::option::of(range()),
        errored_only in any::<bool>(),
        first in 1u32..4,
    ) {
        let (snapshot, reference) = build(&batches);
        for user in users_of(&reference) {
            let expected = reference.sessions(&user, range, errored_only);
            let mut request = SessionsRequest {
                user_id: user.clone(),
                range,
                errored_only,
                first,
                after: None,
            };
            let mut walked = Vec::new();
            loop {
                let page = snapshot.sessions(&request).unwrap();
                prop_assert_eq!(page.total_count, expected.len() as u64);
                let cursor = page.rows.last().map(|r| r.cursor.clone());
                walked.extend(page.rows.into_iter().map(|mut r| { r.cursor.clear(); r }));
                prop_assert_eq!(page.has_next_page, walked.len() < expected.len());
                if !page.has_next_page {
                    break;
                }
                request.after = cursor;
            }
            prop_assert_eq!(walked, expected, "user {:?}", user);
        }
    }

    /// Queries of every kind, interleaved on one thread (they share its scratch space), give
    /// the same answers as when run alone.
    #[test]
    fn interleaved_queries_match(
        batches in batches(),
        ranges in prop::collection::vec(range(), 1..4),
        order in order(),
    ) {
        let (snapshot, reference) = build(&batches);
        let now = BASE + DAY;
        for range in ranges {
            let request = UsersRequest { order, first: 200, trend_buckets: vec![7], ..UsersRequest::new(range) };
            let expected = reference.users(range, None, order, &[7]);
            let rows: Vec<_> = snapshot.users(&request).unwrap().rows.into_iter().map(|mut r| { r.cursor.clear(); r }).collect();
            prop_assert_eq!(rows, expected.rows);
            prop_assert_eq!(snapshot.overview(range).unwrap(), reference.overview(range));
            for user in reference.user_ids() {
                prop_assert_eq!(
                    snapshot.user_detail(&user, &[3, 40], now).unwrap(),
                    reference.user_detail(&user, &[3, 40], now)
                );
            }
            prop_assert_eq!(snapshot.overview(range).unwrap(), reference.overview(range));
        }
    }

    #[test]
    fn larger_projects_match(batches in big_batches(), range in range(), order in order()) {
        let (snapshot, reference) = build(&batches);
        prop_assert_eq!(snapshot.overview(range).unwrap(), reference.overview(range));
        let request = UsersRequest { order, first: 200, ..UsersRequest::new(range) };
        let rows: Vec<_> = snapshot
            .users(&request)
            .unwrap()
            .rows
            .into_iter()
            .map(|mut r| { r.cursor.clear(); r })
            .collect();
        prop_assert_eq!(rows, reference.users(range, None, order, &[14]).rows);
        for user in reference.user_ids() {
            prop_assert_eq!(
                snapshot.user_detail(&user, &[30], BASE + DAY).unwrap(),
                reference.user_detail(&user, &[30], BASE + DAY)
            );
        }
    }

    #[test]
    fn previous_period_overview_matches(
        batches in batches(),
        range in prop_oneof![range(), slot_range()],
    ) {
        let (snapshot, reference) = build(&batches);
        prop_assert_eq!(
            snapshot.previous_period_overview(range).unwrap(),
            reference.previous_period_overview(range)
        );
    }

    /// Filters, search, order, cursors and previous-period totals together: every page
    /// walked equals the reference's filtered order.
    #[test]
    fn filtered_users_pages_walk_the_reference_order(
        batches in batches(),
        range in prop_oneof![range(), slot_range()],
        search in pick(SEARCHES),
        filter in filter(),
        exact_bounds in (
            prop::option::weighted(0.3, any::<prop::sample::Index>()),
            prop::option::weighted(0.3, any::<prop::sample::Index>()),
        ),
        previous_period in any::<bool>(),
        order in order(),
        first in 1u32..5,
    ) {
        let (snapshot, reference) = build(&batches);
        // Bounds equal to some user's exact cost sum in range test that both are inclusive.
        let mut filter = filter;
        let sums: Vec<f64> = reference
            .users(range, None, UserOrder::default(), &[])
            .rows
            .iter()
            .map(|r| r.cost.sum)
            .collect();
        if !sums.is_empty() {
            if let Some(i) = exact_bounds.0 {
                filter.min_cost_sum = Some(sums[i.index(sums.len())]);
            }
            if let Some(i) = exact_bounds.1 {
                filter.max_cost_sum = Some(sums[i.index(sums.len())]);
            }
        }
        let mut request = UsersRequest {
            search: opt_string(search),
            order,
            first,
            trend_buckets: vec![3],
            filter: filter.clone(),
            previous_period,
            ..UsersRequest::new(range)
        };
        if min_above_max(&filter) {
            let error = snapshot.users(&request).unwrap_err();
            prop_assert_eq!(error.field(), "filter.min_cost_sum");
            return Ok(());
        }
        let expected =
            reference.users_selected(range, search, order, &[3], &filter, previous_period);
        let mut walked = Vec::new();
        loop {
            let page = snapshot.users(&request).unwrap();
            prop_assert_eq!(page.total_count, expected.rows.len() as u64);
            prop_assert_eq!(page.cost_rollup, expected.cost_rollup);
            let cursor = page.rows.last().map(|r| r.cursor.clone());
            walked.extend(page.rows.into_iter().map(|mut r| { r.cursor.clear(); r }));
            if !page.has_next_page {
                break;
            }
            request.after = cursor;
        }
        prop_assert_eq!(walked, expected.rows);
    }

    /// The export reads every selected user once, in order, whatever the slice size.
    #[test]
    fn export_slices_read_the_reference_order(
        batches in batches(),
        range in prop_oneof![range(), slot_range()],
        filter in filter(),
        order in order(),
        slice in 1usize..7,
    ) {
        prop_assume!(!min_above_max(&filter));
        let (snapshot, reference) = build(&batches);
        let request = UsersRequest {
            order,
            first: 200,
            trend_buckets: Vec::new(),
            filter: filter.clone(),
            ..UsersRequest::new(range)
        };
        let expected = reference.users_selected(range, None, order, &[], &filter, false);
        let export = snapshot.users_export(&request).unwrap();
        let mut read = Vec::new();
        loop {
            let rows = snapshot.export_rows(&export, read.len(), slice);
            if rows.is_empty() {
                break;
            }
            prop_assert!(rows.len() <= slice);
            read.extend(rows.into_iter().map(|mut r| { r.cursor.clear(); r }));
        }
        prop_assert_eq!(read, expected.rows);
    }

    #[test]
    fn retention_matches(
        batches in wide_batches(),
        range in calendar_range(),
        cohort in unit(),
        periods in prop_oneof![1u32..4, 4u32..=60],
        now_offset in -3i64..60,
        now_hours in 0i64..24,
    ) {
        let (snapshot, reference) = build(&batches);
        let now_ns = BASE + now_offset * DAY + now_hours * HOUR;
        let answer = snapshot.retention(&RetentionRequest { range, cohort, periods, now_ns });
        match reference.retention(range, cohort, periods, now_ns) {
            Some(expected) => prop_assert_eq!(answer.unwrap(), expected),
            None => prop_assert_eq!(answer.unwrap_err().field(), "range"),
        }
    }

    #[test]
    fn active_users_match(
        batches in wide_batches(),
        range in prop_oneof![calendar_range(), range()],
        window in unit(),
    ) {
        let (snapshot, reference) = build(&batches);
        let answer = snapshot.active_users(range, window);
        match reference.active_users(range, window) {
            Some(expected) => prop_assert_eq!(answer.unwrap(), expected),
            None => prop_assert_eq!(answer.unwrap_err().field(), "range"),
        }
    }

    /// Upserting in one batch or in many, in any split, gives the same snapshot figures.
    #[test]
    fn batch_split_does_not_matter(batches in batches(), range in range()) {
        let (snapshot, _) = build(&batches);
        let mut whole = Snapshot::new();
        whole.upsert(batches.concat());
        prop_assert_eq!(whole.overview(range).unwrap(), snapshot.overview(range).unwrap());
        let request = UsersRequest { first: 200, ..UsersRequest::new(range) };
        prop_assert_eq!(whole.users(&request).unwrap(), snapshot.users(&request).unwrap());
    }
}
