//! A user's lifetime profile (SPEC §4.3, §4.4), from the user's own trace list only.

use std::collections::HashMap;

use crate::api::{CostStats, DailyActivity, TokenUsage, UserBehaviour, UserDetail, UserIssue};
use crate::error::QueryError;
use crate::extras::Extras;
use crate::numbers::{NS_PER_MS, average_usd, median2, median2_usd, usd};
use crate::scratch::{Scratch, with_scratch};
use crate::snapshot::{Snapshot, UserTrace};
use crate::time::{NS_PER_DAY, day_of};
use crate::validate;

/// Traces, distinct sessions and time bounds of one issue or behaviour for one user.
#[derive(Debug, Clone, Copy)]
struct Linked {
    traces: u64,
    sessions: u64,
    first_seen_ns: i64,
    last_seen_ns: i64,
}

impl Snapshot {
    /// The lifetime profile of `user_id`, with one activity series per entry of
    /// `activity_days` (each 1–365) ending on the UTC day of `now_ns`; `None` for a user with
    /// no trace. O(k) for a user with k traces, plus sorting their issues and behaviours.
    pub fn user_detail(
        &self,
        user_id: &str,
        activity_days: &[u32],
        now_ns: i64,
    ) -> Result<Option<UserDetail>, QueryError> {
        validate::activity_days(activity_days)?;
        let Some(user) = self.find_user(user_id) else {
            return Ok(None);
        };

        Ok(Some(with_scratch(|scratch| {
            self.detail_of(scratch, user, user_id, activity_days, now_ns)
        })))
    }

    fn detail_of(
        &self,
        scratch: &mut Scratch,
        user: u32,
        user_id: &str,
        activity_days: &[u32],
        now_ns: i64,
    ) -> UserDetail {
        // Stamps per session of this user (by `UserTrace::user_session`).
        let sessions_len = self.max_user_sessions as usize;
        scratch.size_stamps([sessions_len, sessions_len, 0, 0, 0]);
        let own = self.user_traces(user);
        let lifetime = scratch.begin(1) + 1;
        let [session_stamp, errored_stamp, ..] = &mut scratch.stamps;
        let mut sessions = 0u64;
        let mut errored_sessions = 0u64;
        let mut cost = 0i128;
        let (mut input, mut output, mut cached) = (0i64, 0i64, 0i64);
        let mut duration_ns = 0i128;
        let mut active_days = 0u64;
        let mut previous_day = None;
        let mut costs = Vec::with_capacity(own.len());
        for t in own {
            let session = t.user_session as usize;
            if session_stamp[session] != lifetime {
                session_stamp[session] = lifetime;
                sessions += 1;
            }
            if t.errored && errored_stamp[session] != lifetime {
                errored_stamp[session] = lifetime;
                errored_sessions += 1;
            }
            cost += i128::from(t.cost);
            costs.push(t.cost);
            input = input.saturating_add(t.input);
            output = output.saturating_add(t.output);
            cached = cached.saturating_add(t.cached);
            duration_ns += i128::from(t.end) - i128::from(t.start);
            let day = day_of(t.start);
            if previous_day != Some(day) {
                active_days += 1;
                previous_day = Some(day);
            }
        }
        let traces = own.len() as u64;
        let activities = activity_days
            .iter()
            .map(|&days| self.activity(scratch, own, days, now_ns))
            .collect();
        let (issues, behaviours) = self.issues_and_behaviours(own);

        UserDetail {
            user_id: user_id.to_owned(),
            email: self.user_email(user).map(str::to_owned),
            first_seen_ns: own[0].start,
            last_seen_ns: own[own.len() - 1].start,
            traces,
            sessions,
            errored_sessions,
            cost: CostStats {
                sum: usd(cost),
                average: average_usd(cost, traces),
                median: median2_usd(median2(&mut costs)),
            },
            tokens: TokenUsage::new(input, output, cached),
            average_trace_duration_ms: duration_ns as f64 / traces as f64 / NS_PER_MS,
            active_days,
            activities,
            issues,
            behaviours,
        }
    }

    /// One point per UTC day for the `days` days ending on the day of `now_ns`.
    fn activity(
        &self,
        scratch: &mut Scratch,
        own: &[UserTrace],
        days: u32,
        now_ns: i64,
    ) -> Vec<DailyActivity> {
        // Day d of the window stamps `base + 1 + d`.
        let base = scratch.begin(days);
        let [session_stamp, errored_stamp, ..] = &mut scratch.stamps;
        let last_day = day_of(now_ns);
        let first_day = last_day - i64::from(days) + 1;
        let window_start = i128::from(first_day) * i128::from(NS_PER_DAY);
        let window_end = (i128::from(last_day) + 1) * i128::from(NS_PER_DAY);
        let a = own.partition_point(|t| i128::from(t.start) < window_start);
        let b = a + own[a..].partition_point(|t| i128::from(t.start) < window_end);

        let mut points: Vec<DailyActivity> = (0..i64::from(days))
            .map(|d| DailyActivity {
                day: first_day + d,
                traces: 0,
                errored_traces: 0,
                sessions: 0,
                errored_sessions: 0,
                cost: 0.0,
            })
            .collect();
        let mut costs = vec![0i128; days as usize];
        for t in &own[a..b] {
            let index = (day_of(t.start) - first_day) as usize;
            let stamp = base + 1 + index as u32;
            let point = &mut points[index];
            let session = t.user_session as usize;
            point.traces += 1;
            costs[index] += i128::from(t.cost);
            if session_stamp[session] != stamp {
                session_stamp[session] = stamp;
                point.sessions += 1;
            }
            if t.errored {
                point.errored_traces += 1;
                if errored_stamp[session] != stamp {
                    errored_stamp[session] = stamp;
                    point.errored_sessions += 1;
                }
            }
        }
        for (point, cost) in points.iter_mut().zip(costs) {
            point.cost = usd(cost);
        }
        points
    }

    /// Issues and behaviours of the user's traces, ordered by traces descending, then by
    /// id / name.
    fn issues_and_behaviours(&self, own: &[UserTrace]) -> (Vec<UserIssue>, Vec<UserBehaviour>) {
        let mut issues: HashMap<u32, Linked> = HashMap::new();
        let mut behaviours: HashMap<u32, Linked> = HashMap::new();
        let mut issue_sessions: Vec<(u32, u32)> = Vec::new();
        let mut behaviour_sessions: Vec<(u32, u32)> = Vec::new();
        let mut extras = Extras::default();
        for t in own.iter().filter(|t| t.has_links) {
            self.extras_of(t.slot, &mut extras);
            let (start, session) = (t.start, t.session);
            for issue in &extras.issues {
                link(&mut issues, issue.issue, start);
                issue_sessions.push((issue.issue, session));
            }
            for &behaviour in &extras.behaviours {
                link(&mut behaviours, behaviour, start);
                behaviour_sessions.push((behaviour, session));
            }
        }
        count_sessions(&mut issues, issue_sessions);
        count_sessions(&mut behaviours, behaviour_sessions);

        let mut issues: Vec<UserIssue> = issues
            .into_iter()
            .map(|(id, l)| UserIssue {
                id: self.names.resolve(id).to_owned(),
                title: self.issue_title(id).map(str::to_owned),
                traces: l.traces,
                sessions: l.sessions,
                first_seen_ns: l.first_seen_ns,
                last_seen_ns: l.last_seen_ns,
            })
            .collect();
        issues.sort_unstable_by(|a, b| b.traces.cmp(&a.traces).then_with(|| a.id.cmp(&b.id)));
        let mut behaviours: Vec<UserBehaviour> = behaviours
            .into_iter()
            .map(|(name, l)| UserBehaviour {
                name: self.names.resolve(name).to_owned(),
                traces: l.traces,
                sessions: l.sessions,
                first_seen_ns: l.first_seen_ns,
                last_seen_ns: l.last_seen_ns,
            })
            .collect();
        behaviours
            .sort_unstable_by(|a, b| b.traces.cmp(&a.traces).then_with(|| a.name.cmp(&b.name)));
        (issues, behaviours)
    }
}

/// Counts a trace for `id`; a trace links an id at most once (its lists are unique), and the
/// user's positions come in time order.
fn link(links: &mut HashMap<u32, Linked>, id: u32, start: i64) {
    links
        .entry(id)
        .and_modify(|l| {
            l.traces += 1;
            l.first_seen_ns = l.first_seen_ns.min(start);
            l.last_seen_ns = l.last_seen_ns.max(start);
        })
        .or_insert(Linked {
            traces: 1,
            sessions: 0,
            first_seen_ns: start,
            last_seen_ns: start,
        });
}

fn count_sessions(links: &mut HashMap<u32, Linked>, mut pairs: Vec<(u32, u32)>) {
    pairs.sort_unstable();
    pairs.dedup();
    for (id, _) in pairs {
        if let Some(l) = links.get_mut(&id) {
            l.sessions += 1;
        }
    }
}
