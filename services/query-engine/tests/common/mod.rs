//! A brute-force reading of SPEC §4 over a plain list of traces: no interning, no sorted
//! columns, no markers — hash sets and full sorts, so each figure is easy to check by eye.
//! The engine must agree with it exactly.

#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use userlens_query_engine::{
    ActiveUsers, ActiveUsersPoint, Breakdowns, CostStats, DailyActivity, Histogram,
    HistogramBucket, ModelBreakdown, OrderDirection, Overview, PeriodOverview, PeriodTotals,
    PeriodUnit, ProviderBreakdown, RetentionCohort, SessionRow, TimeRange, TokenUsage,
    ToolBreakdown, TraceRow, UserBehaviour, UserDetail, UserFilter, UserIssue, UserOrder,
    UserOrderField, UserRow,
};

pub const SECOND: i64 = 1_000_000_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

#[derive(Debug, Clone, Default)]
pub struct Reference {
    pub traces: BTreeMap<[u8; 16], TraceRow>,
}

/// A users-table answer before pagination.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceUsers {
    pub rows: Vec<UserRow>,
    pub cost_rollup: CostStats,
}

fn present(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn usd(nano: i128) -> f64 {
    nano as f64 / 1e9
}

fn average_usd(sum: i128, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        sum as f64 / n as f64 / 1e9
    }
}

/// Twice the median of integer values (sorted copy, middle element(s)).
fn median_twice(values: &[i64]) -> i128 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n % 2 == 1 {
        2 * sorted[n / 2] as i128
    } else {
        sorted[n / 2 - 1] as i128 + sorted[n / 2] as i128
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Reference {
    pub fn upsert(&mut self, rows: Vec<TraceRow>) {
        for row in rows {
            self.traces.insert(row.trace_id, row);
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &TraceRow> {
        self.traces.values()
    }

    pub fn user_of(t: &TraceRow) -> Option<&str> {
        present(&t.user_id)
    }

    pub fn user_ids(&self) -> BTreeSet<String> {
        self.all()
            .filter_map(|t| Self::user_of(t).map(str::to_owned))
            .collect()
    }

    fn in_range(&self, range: TimeRange) -> Vec<&TraceRow> {
        self.all()
            .filter(|t| range.from_ns <= t.start_ns && t.start_ns < range.to_ns)
            .collect()
    }

    fn of_user(&self, user: &str) -> Vec<&TraceRow> {
        self.all()
            .filter(|t| Self::user_of(t) == Some(user))
            .collect()
    }

    /// The email on the user's most recent trace (time, then larger trace id) that has one.
    pub fn lifetime_email(&self, user: &str) -> Option<String> {
        self.of_user(user)
            .into_iter()
            .filter(|t| present(&t.email).is_some())
            .max_by_key(|t| (t.start_ns, t.trace_id))
            .and_then(|t| present(&t.email).map(str::to_owned))
    }

    pub fn histogram_width(range: TimeRange) -> i64 {
        let count = |w: i64| -> i128 {
            let w = w as i128;
            (range.to_ns as i128 - 1).div_euclid(w) - (range.from_ns as i128).div_euclid(w) + 1
        };
        let listed = [
            MINUTE,
            5 * MINUTE,
            15 * MINUTE,
            30 * MINUTE,
            HOUR,
            3 * HOUR,
            6 * HOUR,
            12 * HOUR,
            DAY,
            7 * DAY,
            30 * DAY,
        ];
        for w in listed {
            if count(w) <= 60 {
                return w;
            }
        }
        let mut k = 2;
        while count(k * 30 * DAY) > 60 {
            k += 1;
        }
        k * 30 * DAY
    }

    pub fn overview(&self, range: TimeRange) -> Overview {
        let traces = self.in_range(range);
        let users: HashSet<&str> = traces.iter().filter_map(|t| Self::user_of(t)).collect();
        let all_users = self.user_ids();
        let new_users = all_users
            .iter()
            .filter(|u| {
                let first = self.of_user(u).iter().map(|t| t.start_ns).min().unwrap();
                range.from_ns <= first && first < range.to_ns
            })
            .count();
        let returning_users = users
            .iter()
            .filter(|u| self.of_user(u).iter().any(|t| t.start_ns < range.from_ns))
            .count();
        let with_user = traces.iter().filter(|t| Self::user_of(t).is_some()).count();
        let sessions: HashSet<&str> = traces.iter().map(|t| t.session_id.as_str()).collect();
        let sessions_with_user: HashSet<&str> = traces
            .iter()
            .filter(|t| Self::user_of(t).is_some())
            .map(|t| t.session_id.as_str())
            .collect();
        let user_sessions: HashSet<(&str, &str)> = traces
            .iter()
            .filter_map(|t| Self::user_of(t).map(|u| (u, t.session_id.as_str())))
            .collect();

        let width = Self::histogram_width(range);
        let first_index = (range.from_ns as i128).div_euclid(width as i128);
        let last_index = (range.to_ns as i128 - 1).div_euclid(width as i128);
        let mut buckets = Vec::new();
        for index in first_index..=last_index {
            let in_bucket: Vec<&&TraceRow> = traces
                .iter()
                .filter(|t| (t.start_ns as i128).div_euclid(width as i128) == index)
                .collect();
            buckets.push(HistogramBucket {
                start_ns: (index * width as i128) as i64,
                traces: in_bucket.len() as u64,
                traces_with_user: in_bucket
                    .iter()
                    .filter(|t| Self::user_of(t).is_some())
                    .count() as u64,
                active_users: in_bucket
                    .iter()
                    .filter_map(|t| Self::user_of(t))
                    .collect::<HashSet<_>>()
                    .len() as u64,
                sessions: in_bucket
                    .iter()
                    .map(|t| t.session_id.as_str())
                    .collect::<HashSet<_>>()
                    .len() as u64,
                errored_sessions: in_bucket
                    .iter()
                    .filter(|t| t.errored)
                    .map(|t| t.session_id.as_str())
                    .collect::<HashSet<_>>()
                    .len() as u64,
                errored_traces: in_bucket.iter().filter(|t| t.errored).count() as u64,
            });
        }
        Overview {
            unique_users: users.len() as u64,
            new_users: new_users as u64,
            returning_users: returning_users as u64,
            traces: traces.len() as u64,
            traces_with_user: with_user as u64,
            user_trace_share: ratio(with_user, traces.len()),
            traces_per_user: ratio(with_user, users.len()),
            sessions: sessions.len() as u64,
            sessions_with_user: sessions_with_user.len() as u64,
            sessions_per_user: ratio(user_sessions.len(), users.len()),
            histogram: Histogram {
                bucket_seconds: width / SECOND,
                buckets,
            },
        }
    }

    /// Every matching user's row (cursor left empty), fully sorted, and the cost rollup.
    pub fn users(
        &self,
        range: TimeRange,
        search: Option<&str>,
        order: UserOrder,
        trend_buckets: &[u32],
    ) -> ReferenceUsers {
        self.users_selected(
            range,
            search,
            order,
            trend_buckets,
            &UserFilter::default(),
            false,
        )
    }

    /// `users` with a filter (SPEC §4.8) and, when asked, each row's previous-period totals.
    pub fn users_selected(
        &self,
        range: TimeRange,
        search: Option<&str>,
        order: UserOrder,
        trend_buckets: &[u32],
        filter: &UserFilter,
        previous_period: bool,
    ) -> ReferenceUsers {
        let needle = search
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
        let traces = self.in_range(range);
        let mut per_user: BTreeMap<&str, Vec<&TraceRow>> = BTreeMap::new();
        for t in &traces {
            if let Some(u) = Self::user_of(t) {
                per_user.entry(u).or_default().push(t);
            }
        }
        let mut rows = Vec::new();
        let mut medians_twice = Vec::new();
        for (user, own) in per_user {
            let email = self.lifetime_email(user);
            if let Some(needle) = &needle {
                let in_id = user.to_lowercase().contains(needle.as_str());
                let in_email = email
                    .as_deref()
                    .is_some_and(|e| e.to_lowercase().contains(needle.as_str()));
                if !in_id && !in_email {
                    continue;
                }
            }
            if !self.filter_matches(user, &own, filter) {
                continue;
            }
            let sessions: HashSet<&str> = own.iter().map(|t| t.session_id.as_str()).collect();
            let errored: HashSet<&str> = own
                .iter()
                .filter(|t| t.errored)
                .map(|t| t.session_id.as_str())
                .collect();
            let costs: Vec<i64> = own.iter().map(|t| t.cost_nano).collect();
            let sum: i128 = costs.iter().map(|&c| c as i128).sum();
            let median2 = median_twice(&costs);
            medians_twice.push(median2);
            let trends = trend_buckets
                .iter()
                .map(|&b| {
                    let mut counts = vec![0u64; b as usize];
                    for t in &own {
                        let slice = (t.start_ns as i128 - range.from_ns as i128) * b as i128
                            / (range.to_ns as i128 - range.from_ns as i128);
                        counts[slice as usize] += 1;
                    }
                    counts
                })
                .collect();
            rows.push(UserRow {
                user_id: user.to_owned(),
                email,
                first_seen_ns: own.iter().map(|t| t.start_ns).min().unwrap(),
                last_seen_ns: own.iter().map(|t| t.start_ns).max().unwrap(),
                traces: own.len() as u64,
                sessions: sessions.len() as u64,
                errored_sessions: errored.len() as u64,
                error_rate: ratio(errored.len(), sessions.len()),
                cost: CostStats {
                    sum: usd(sum),
                    average: average_usd(sum, own.len()),
                    median: median2 as f64 / 2e9,
                },
                tokens: TokenUsage {
                    input: own.iter().map(|t| t.input_tokens).sum(),
                    output: own.iter().map(|t| t.output_tokens).sum(),
                    cached_input: own.iter().map(|t| t.cached_input_tokens).sum(),
                    total: own.iter().map(|t| t.input_tokens + t.output_tokens).sum(),
                },
                trends,
                previous_period: previous_period.then(|| {
                    let span = range.to_ns - range.from_ns;
                    let before = TimeRange::new(range.from_ns - span, range.from_ns);
                    let own: Vec<&TraceRow> = self
                        .in_range(before)
                        .into_iter()
                        .filter(|t| Self::user_of(t) == Some(user))
                        .collect();
                    PeriodTotals {
                        traces: own.len() as u64,
                        cost_sum: usd(own.iter().map(|t| t.cost_nano as i128).sum()),
                    }
                }),
                cursor: String::new(),
            });
        }
        // Each user's exact cost sum and doubled median, for the rollup and the orders.
        let own_costs = |user: &str| -> Vec<i64> {
            traces
                .iter()
                .filter(|t| Self::user_of(t) == Some(user))
                .map(|t| t.cost_nano)
                .collect()
        };
        let sums: BTreeMap<String, i128> = rows
            .iter()
            .map(|r| {
                let sum = own_costs(&r.user_id).iter().map(|&c| c as i128).sum();
                (r.user_id.clone(), sum)
            })
            .collect();
        let medians: BTreeMap<String, i128> = rows
            .iter()
            .map(|r| (r.user_id.clone(), median_twice(&own_costs(&r.user_id))))
            .collect();
        // `rows` is in user id order here, the order in which the rollup average is summed.
        let cost_rollup = if rows.is_empty() {
            CostStats::default()
        } else {
            let average = rows.iter().map(|r| r.cost.average).sum::<f64>() / rows.len() as f64;
            medians_twice.sort();
            let n = medians_twice.len();
            let median = if n % 2 == 1 {
                medians_twice[n / 2] as f64 / 2e9
            } else {
                (medians_twice[n / 2 - 1] + medians_twice[n / 2]) as f64 / 4e9
            };
            CostStats {
                sum: usd(sums.values().sum()),
                average,
                median,
            }
        };
        rows.sort_by(|a, b| {
            let by_key = compare_key(order.field, a, b, &medians, &sums);
            let by_key = match order.direction {
                OrderDirection::Asc => by_key,
                OrderDirection::Desc => by_key.reverse(),
            };
            by_key.then_with(|| a.user_id.cmp(&b.user_id))
        });
        ReferenceUsers { rows, cost_rollup }
    }

    /// Whether a user, with `own` their traces in range, meets every condition of `filter`:
    /// read straight from SPEC §4.8 on the raw trace rows.
    fn filter_matches(&self, user: &str, own: &[&TraceRow], filter: &UserFilter) -> bool {
        let sum: i128 = own.iter().map(|t| t.cost_nano as i128).sum();
        let nano = |usd: f64| (usd * 1e9).round() as i128;
        let any = |f: &dyn Fn(&TraceRow) -> bool| own.iter().any(|t| f(t));
        let listed = |values: &[String], name: &Option<String>| {
            name.as_ref().is_some_and(|n| values.contains(n))
        };
        filter.min_cost_sum.is_none_or(|min| sum >= nano(min))
            && filter.max_cost_sum.is_none_or(|max| sum <= nano(max))
            && (!filter.errored_only || any(&|t| t.errored))
            && filter
                .has_email
                .is_none_or(|wanted| self.lifetime_email(user).is_some() == wanted)
            && (filter.models.is_empty()
                || any(&|t| t.models.iter().any(|m| listed(&filter.models, &m.model))))
            && (filter.providers.is_empty()
                || any(&|t| {
                    t.models
                        .iter()
                        .any(|m| listed(&filter.providers, &m.provider))
                }))
            && (filter.tools.is_empty()
                || any(&|t| t.tools.iter().any(|c| filter.tools.contains(&c.tool))))
            && filter
                .issue_id
                .as_ref()
                .is_none_or(|issue| any(&|t| t.issues.iter().any(|i| &i.id == issue)))
            && filter
                .behaviour
                .as_ref()
                .is_none_or(|name| any(&|t| t.behaviours.contains(name)))
    }

    /// The overview of `[from − (to − from), from)` without its histogram.
    pub fn previous_period_overview(&self, range: TimeRange) -> PeriodOverview {
        let span = range.to_ns - range.from_ns;
        let before = TimeRange::new(range.from_ns - span, range.from_ns);
        let o = self.overview(before);
        PeriodOverview {
            range: before,
            unique_users: o.unique_users,
            new_users: o.new_users,
            returning_users: o.returning_users,
            traces: o.traces,
            traces_with_user: o.traces_with_user,
            user_trace_share: o.user_trace_share,
            traces_per_user: o.traces_per_user,
            sessions: o.sessions,
            sessions_with_user: o.sessions_with_user,
            sessions_per_user: o.sessions_per_user,
        }
    }

    /// Each user's earliest trace time.
    fn first_seen(&self) -> BTreeMap<&str, i64> {
        let mut first: BTreeMap<&str, i64> = BTreeMap::new();
        for t in self.all() {
            if let Some(user) = Self::user_of(t) {
                let at = first.entry(user).or_insert(t.start_ns);
                *at = (*at).min(t.start_ns);
            }
        }
        first
    }

    /// Retention cohorts, or `None` when the range holds more than 400 cohort periods.
    pub fn retention(
        &self,
        range: TimeRange,
        unit: PeriodUnit,
        periods: u32,
        now_ns: i64,
    ) -> Option<Vec<RetentionCohort>> {
        let mut first_start = period_start_of(unit, range.from_ns);
        if first_start < range.from_ns {
            first_start = next_period_start(unit, first_start);
        }
        let mut count = 0;
        let mut start = first_start;
        while start < range.to_ns {
            count += 1;
            start = next_period_start(unit, start);
        }
        if count > 400 {
            return None;
        }
        let first_seen = self.first_seen();
        let mut cohorts = Vec::new();
        let mut start = first_start;
        while start < range.to_ns && start <= now_ns {
            let end = next_period_start(unit, start);
            let members: Vec<&str> = first_seen
                .iter()
                .filter(|(_, at)| start <= **at && **at < end)
                .map(|(user, _)| *user)
                .collect();
            let mut active = Vec::new();
            let mut period = start;
            for _ in 0..periods {
                if period > now_ns {
                    break;
                }
                let next = next_period_start(unit, period);
                let window = TimeRange::new(period, next);
                let in_window: HashSet<&str> = self
                    .in_range(window)
                    .into_iter()
                    .filter_map(Self::user_of)
                    .collect();
                active.push(members.iter().filter(|u| in_window.contains(*u)).count() as u64);
                period = next;
            }
            cohorts.push(RetentionCohort {
                start_ns: start,
                users: members.len() as u64,
                active,
            });
            start = end;
        }
        Some(cohorts)
    }

    /// Active users per window and stickiness, or `None` beyond 400 windows.
    pub fn active_users(&self, range: TimeRange, window: PeriodUnit) -> Option<ActiveUsers> {
        let distinct = |from: i64, to: i64| -> usize {
            let window = TimeRange::new(from.max(range.from_ns), to.min(range.to_ns));
            self.in_range(window)
                .into_iter()
                .filter_map(Self::user_of)
                .collect::<HashSet<_>>()
                .len()
        };
        let mut points = Vec::new();
        let mut start = period_start_of(window, range.from_ns);
        while start < range.to_ns {
            let end = next_period_start(window, start);
            points.push(ActiveUsersPoint {
                start_ns: start,
                active_users: distinct(start, end) as u64,
            });
            start = end;
        }
        if points.len() > 400 {
            return None;
        }
        let mut days = 0u64;
        let mut user_days = 0u64;
        let mut day = period_start_of(PeriodUnit::Day, range.from_ns);
        while day < range.to_ns {
            days += 1;
            user_days += distinct(day, day + DAY) as u64;
            day += DAY;
        }
        let unique_users = distinct(range.from_ns, range.to_ns) as u64;
        let stickiness = if unique_users == 0 {
            0.0
        } else {
            user_days as f64 / days as f64 / unique_users as f64
        };
        Some(ActiveUsers {
            points,
            unique_users,
            stickiness,
        })
    }

    pub fn user_detail(&self, user: &str, days: &[u32], now_ns: i64) -> Option<UserDetail> {
        let own = self.of_user(user);
        if own.is_empty() {
            return None;
        }
        let costs: Vec<i64> = own.iter().map(|t| t.cost_nano).collect();
        let sum: i128 = costs.iter().map(|&c| c as i128).sum();
        let sessions: HashSet<&str> = own.iter().map(|t| t.session_id.as_str()).collect();
        let errored: HashSet<&str> = own
            .iter()
            .filter(|t| t.errored)
            .map(|t| t.session_id.as_str())
            .collect();
        let duration: i128 = own
            .iter()
            .map(|t| t.end_ns as i128 - t.start_ns as i128)
            .sum();
        let active_days: HashSet<i64> = own.iter().map(|t| t.start_ns.div_euclid(DAY)).collect();
        let today = now_ns.div_euclid(DAY);
        let activities = days
            .iter()
            .map(|&d| {
                (today - d as i64 + 1..=today)
                    .map(|day| {
                        let on_day: Vec<&&TraceRow> = own
                            .iter()
                            .filter(|t| t.start_ns.div_euclid(DAY) == day)
                            .collect();
                        DailyActivity {
                            day,
                            traces: on_day.len() as u64,
                            errored_traces: on_day.iter().filter(|t| t.errored).count() as u64,
                            sessions: on_day
                                .iter()
                                .map(|t| t.session_id.as_str())
                                .collect::<HashSet<_>>()
                                .len() as u64,
                            errored_sessions: on_day
                                .iter()
                                .filter(|t| t.errored)
                                .map(|t| t.session_id.as_str())
                                .collect::<HashSet<_>>()
                                .len() as u64,
                            cost: usd(on_day.iter().map(|t| t.cost_nano as i128).sum()),
                        }
                    })
                    .collect()
            })
            .collect();

        let mut issue_ids: BTreeSet<&str> = BTreeSet::new();
        for t in &own {
            for i in &t.issues {
                issue_ids.insert(i.id.as_str());
            }
        }
        let mut issues: Vec<UserIssue> = issue_ids
            .into_iter()
            .map(|id| {
                let linked: Vec<&&TraceRow> = own
                    .iter()
                    .filter(|t| t.issues.iter().any(|i| i.id == id))
                    .collect();
                let title = self
                    .all()
                    .filter_map(|t| {
                        t.issues
                            .iter()
                            .find(|i| i.id == id)
                            .and_then(|i| present(&i.title))
                            .map(|title| ((t.start_ns, t.trace_id), title))
                    })
                    .max_by_key(|(key, _)| *key)
                    .map(|(_, title)| title.to_owned());
                UserIssue {
                    id: id.to_owned(),
                    title,
                    traces: linked.len() as u64,
                    sessions: linked
                        .iter()
                        .map(|t| t.session_id.as_str())
                        .collect::<HashSet<_>>()
                        .len() as u64,
                    first_seen_ns: linked.iter().map(|t| t.start_ns).min().unwrap(),
                    last_seen_ns: linked.iter().map(|t| t.start_ns).max().unwrap(),
                }
            })
            .collect();
        issues.sort_by(|a, b| b.traces.cmp(&a.traces).then(a.id.cmp(&b.id)));

        let mut names: BTreeSet<&str> = BTreeSet::new();
        for t in &own {
            for b in &t.behaviours {
                names.insert(b.as_str());
            }
        }
        let mut behaviours: Vec<UserBehaviour> = names
            .into_iter()
            .map(|name| {
                let linked: Vec<&&TraceRow> = own
                    .iter()
                    .filter(|t| t.behaviours.iter().any(|b| b == name))
                    .collect();
                UserBehaviour {
                    name: name.to_owned(),
                    traces: linked.len() as u64,
                    sessions: linked
                        .iter()
                        .map(|t| t.session_id.as_str())
                        .collect::<HashSet<_>>()
                        .len() as u64,
                    first_seen_ns: linked.iter().map(|t| t.start_ns).min().unwrap(),
                    last_seen_ns: linked.iter().map(|t| t.start_ns).max().unwrap(),
                }
            })
            .collect();
        behaviours.sort_by(|a, b| b.traces.cmp(&a.traces).then(a.name.cmp(&b.name)));

        Some(UserDetail {
            user_id: user.to_owned(),
            email: self.lifetime_email(user),
            first_seen_ns: own.iter().map(|t| t.start_ns).min().unwrap(),
            last_seen_ns: own.iter().map(|t| t.start_ns).max().unwrap(),
            traces: own.len() as u64,
            sessions: sessions.len() as u64,
            errored_sessions: errored.len() as u64,
            cost: CostStats {
                sum: usd(sum),
                average: average_usd(sum, own.len()),
                median: median_twice(&costs) as f64 / 2e9,
            },
            tokens: TokenUsage {
                input: own.iter().map(|t| t.input_tokens).sum(),
                output: own.iter().map(|t| t.output_tokens).sum(),
                cached_input: own.iter().map(|t| t.cached_input_tokens).sum(),
                total: own.iter().map(|t| t.input_tokens + t.output_tokens).sum(),
            },
            average_trace_duration_ms: duration as f64 / own.len() as f64 / 1e6,
            active_days: active_days.len() as u64,
            activities,
            issues,
            behaviours,
        })
    }

    fn user_window(&self, user: &str, range: Option<TimeRange>) -> Vec<&TraceRow> {
        self.of_user(user)
            .into_iter()
            .filter(|t| range.is_none_or(|r| r.from_ns <= t.start_ns && t.start_ns < r.to_ns))
            .collect()
    }

    pub fn breakdowns(&self, user: &str, range: Option<TimeRange>) -> Breakdowns {
        let own = self.user_window(user, range);
        // (model, provider) → (calls, traces, input, output, cached, cost)
        type Sums = (i64, BTreeSet<[u8; 16]>, i64, i64, i64, i128);
        let mut models: BTreeMap<(String, Option<String>), Sums> = BTreeMap::new();
        let mut providers: BTreeMap<String, Sums> = BTreeMap::new();
        let mut tools: BTreeMap<String, (i64, i64, BTreeSet<[u8; 16]>)> = BTreeMap::new();
        for t in &own {
            for m in &t.models {
                let add = |s: &mut Sums| {
                    s.0 += m.calls;
                    s.1.insert(t.trace_id);
                    s.2 += m.input_tokens;
                    s.3 += m.output_tokens;
                    s.4 += m.cached_input_tokens;
                    s.5 += m.cost_nano as i128;
                };
                if let Some(model) = &m.model {
                    add(models
                        .entry((model.clone(), m.provider.clone()))
                        .or_default());
                }
                if let Some(provider) = &m.provider {
                    add(providers.entry(provider.clone()).or_default());
                }
            }
            for tool in &t.tools {
                let e = tools.entry(tool.tool.clone()).or_default();
                e.0 += tool.calls;
                e.1 += tool.errors;
                e.2.insert(t.trace_id);
            }
        }
        let tokens = |s: &Sums| TokenUsage {
            input: s.2,
            output: s.3,
            cached_input: s.4,
            total: s.2 + s.3,
        };
        let mut models: Vec<ModelBreakdown> = models
            .into_iter()
            .map(|((model, provider), s)| ModelBreakdown {
                model,
                provider,
                calls: s.0,
                traces: s.1.len() as u64,
                tokens: tokens(&s),
                cost: usd(s.5),
            })
            .collect();
        // Stable sort on (model, provider)-ordered input keeps the name tie-break.
        models.sort_by_key(|row| std::cmp::Reverse(row.calls));
        let mut providers: Vec<ProviderBreakdown> = providers
            .into_iter()
            .map(|(provider, s)| ProviderBreakdown {
                provider,
                calls: s.0,
                traces: s.1.len() as u64,
                tokens: tokens(&s),
                cost: usd(s.5),
            })
            .collect();
        providers.sort_by_key(|row| std::cmp::Reverse(row.calls));
        let mut tools: Vec<ToolBreakdown> = tools
            .into_iter()
            .map(|(tool, (calls, errors, traces))| ToolBreakdown {
                tool,
                calls,
                errors,
                traces: traces.len() as u64,
            })
            .collect();
        tools.sort_by_key(|row| std::cmp::Reverse(row.calls));
        Breakdowns {
            models,
            providers,
            tools,
        }
    }

    /// Every session row (cursor left empty), sorted newest first, then session id.
    pub fn sessions(
        &self,
        user: &str,
        range: Option<TimeRange>,
        errored_only: bool,
    ) -> Vec<SessionRow> {
        let own = self.user_window(user, range);
        let mut by_session: BTreeMap<&str, Vec<&TraceRow>> = BTreeMap::new();
        for t in own {
            by_session.entry(t.session_id.as_str()).or_default().push(t);
        }
        let mut rows: Vec<SessionRow> = by_session
            .into_iter()
            .map(|(id, traces)| {
                let started = traces.iter().map(|t| t.start_ns).min().unwrap();
                let ended = traces.iter().map(|t| t.end_ns).max().unwrap();
                let errored_traces = traces.iter().filter(|t| t.errored).count() as u64;
                SessionRow {
                    session_id: id.to_owned(),
                    started_ns: started,
                    ended_ns: ended,
                    duration_ms: (ended - started) as f64 / 1e6,
                    traces: traces.len() as u64,
                    errored_traces,
                    errored: errored_traces > 0,
                    cost: usd(traces.iter().map(|t| t.cost_nano as i128).sum()),
                    tokens: TokenUsage {
                        input: traces.iter().map(|t| t.input_tokens).sum(),
                        output: traces.iter().map(|t| t.output_tokens).sum(),
                        cached_input: traces.iter().map(|t| t.cached_input_tokens).sum(),
                        total: traces
                            .iter()
                            .map(|t| t.input_tokens + t.output_tokens)
                            .sum(),
                    },
                    cursor: String::new(),
                }
            })
            .filter(|s| !errored_only || s.errored)
            .collect();
        rows.sort_by(|a, b| {
            b.started_ns
                .cmp(&a.started_ns)
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        rows
    }
}

/// Compares two rows on one order field, ascending; floats numerically, integers exactly.
fn compare_key(
    field: UserOrderField,
    a: &UserRow,
    b: &UserRow,
    medians: &BTreeMap<String, i128>,
    sums: &BTreeMap<String, i128>,
) -> Ordering {
    let float = |x: f64, y: f64| x.partial_cmp(&y).expect("figures are never NaN");
    match field {
        UserOrderField::LastSeen => a.last_seen_ns.cmp(&b.last_seen_ns),
        UserOrderField::FirstSeen => a.first_seen_ns.cmp(&b.first_seen_ns),
        UserOrderField::Traces => a.traces.cmp(&b.traces),
        UserOrderField::Sessions => a.sessions.cmp(&b.sessions),
        UserOrderField::ErroredSessions => a.errored_sessions.cmp(&b.errored_sessions),
        UserOrderField::ErrorRate => float(a.error_rate, b.error_rate),
        UserOrderField::CostSum => sums[&a.user_id].cmp(&sums[&b.user_id]),
        UserOrderField::CostAverage => float(a.cost.average, b.cost.average),
        UserOrderField::CostMedian => medians[&a.user_id].cmp(&medians[&b.user_id]),
        UserOrderField::Tokens => a.tokens.total.cmp(&b.tokens.total),
        UserOrderField::UserId => a.user_id.cmp(&b.user_id),
        UserOrderField::Email => a
            .email
            .as_deref()
            .unwrap_or("")
            .cmp(b.email.as_deref().unwrap_or("")),
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day of month) of a day on or after 1970-01-01, counted out year by year
/// and month by month.
fn civil_date(mut day: i64) -> (i64, u32, i64) {
    assert!(day >= 0, "the reference calendar starts in 1970");
    let mut year = 1970;
    loop {
        let length = if is_leap(year) { 366 } else { 365 };
        if day < length {
            break;
        }
        day -= length;
        year += 1;
    }
    let mut month = 1;
    while day >= days_in_month(year, month) {
        day -= days_in_month(year, month);
        month += 1;
    }
    (year, month, day + 1)
}

/// The first instant of the UTC day, ISO week (Monday) or calendar month holding `t_ns`.
pub fn period_start_of(unit: PeriodUnit, t_ns: i64) -> i64 {
    let day = t_ns.div_euclid(DAY);
    let start_day = match unit {
        PeriodUnit::Day => day,
        // 1970-01-01 was a Thursday: (day + 3) mod 7 is 0 on Mondays.
        PeriodUnit::Week => day - (day + 3).rem_euclid(7),
        PeriodUnit::Month => day - (civil_date(day).2 - 1),
    };
    start_day * DAY
}

/// The first instant of the period after the one starting at `start_ns`.
pub fn next_period_start(unit: PeriodUnit, start_ns: i64) -> i64 {
    match unit {
        PeriodUnit::Day => start_ns + DAY,
        PeriodUnit::Week => start_ns + 7 * DAY,
        PeriodUnit::Month => {
            let (year, month, _) = civil_date(start_ns.div_euclid(DAY));
            start_ns + days_in_month(year, month) * DAY
        }
    }
}
