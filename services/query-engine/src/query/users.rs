//! The users table for a range (SPEC §4.2): per-user figures from each user's contiguous run
//! of traces in range, exact medians by selection, the page by partial selection on a total
//! order.

use std::cmp::Ordering;

use crate::api::{
    CostStats, OrderDirection, TimeRange, TokenUsage, UserOrder, UserOrderField, UserRow,
    UsersPage, UsersRequest,
};
use crate::cursor::{self, UsersCursor, UsersKey};
use crate::error::QueryError;
use crate::extras::Extras;
use crate::intern::NO_ID;
use crate::numbers::{average_usd, float_key, median_of_median2, median2, median2_usd, ratio, usd};
use crate::query::periods::previous_period;
use crate::scratch::{Scratch, with_scratch};
use crate::snapshot::{ANONYMOUS, Snapshot, window};
use crate::time::trend_slice;
use crate::validate;

/// One user's figures over their traces in the range.
#[derive(Debug, Clone, Copy)]
struct UserFigures {
    cost: i128,
    /// Twice the exact median cost (nano-USD).
    median2: i128,
    first_ns: i64,
    last_ns: i64,
    input: i64,
    output: i64,
    cached: i64,
    user: u32,
    traces: u32,
    sessions: u32,
    errored_sessions: u32,
}

/// The users a request selects.
struct Selection {
    figures: Vec<UserFigures>,
    /// Positions after the cursor, unsorted.
    candidates: Vec<Candidate>,
    total_count: u64,
    cost_rollup: CostStats,
}

/// Every user a users-table request selects, in its order (see `Snapshot::users_export`).
#[derive(Debug, Clone)]
pub struct UsersExport {
    request: UsersRequest,
    figures: Vec<UserFigures>,
    candidates: Vec<Candidate>,
    /// The selected users: the number of rows of the export.
    pub total_count: u64,
    pub cost_rollup: CostStats,
}

impl UsersExport {
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }
}

/// A users-table position: the sort key under the requested order, then twice the user's
/// rank in user id order (the tie-break, on the scale of `SortedIds::scaled_position`).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    key: i128,
    tie: i128,
    index: u32,
}

impl Snapshot {
    /// One page of the users table, plus the total count and cost rollup of every user
    /// matching the search (SPEC §4.2).
    pub fn users(&self, request: &UsersRequest) -> Result<UsersPage, QueryError> {
        let page_size = validate::page_size(request.first)?;
        let Selection {
            figures,
            mut candidates,
            total_count,
            cost_rollup,
        } = self.select_users(request)?;
        let order = request.order;
        let has_next_page = candidates.len() > page_size;
        if has_next_page {
            candidates.select_nth_unstable_by(page_size, |a, b| compare(order.direction, a, b));
            candidates.truncate(page_size);
        }
        candidates.sort_unstable_by(|a, b| compare(order.direction, a, b));

        let rows = candidates
            .iter()
            .map(|c| self.user_row(request, &figures[c.index as usize], c.key))
            .collect();
        Ok(UsersPage {
            rows,
            has_next_page,
            total_count,
            cost_rollup,
        })
    }

    /// Every user the request selects, in order, for reading in slices (`export_rows`):
    /// the figures are computed once, whatever the number of rows read.
    pub fn users_export(&self, request: &UsersRequest) -> Result<UsersExport, QueryError> {
        let Selection {
            figures,
            mut candidates,
            total_count,
            cost_rollup,
        } = self.select_users(request)?;
        let direction = request.order.direction;
        candidates.sort_unstable_by(|a, b| compare(direction, a, b));
        Ok(UsersExport {
            request: request.clone(),
            figures,
            candidates,
            total_count,
            cost_rollup,
        })
    }

    /// Rows `start..start + count` of an export (fewer at its end).
    pub fn export_rows(&self, export: &UsersExport, start: usize, count: usize) -> Vec<UserRow> {
        let end = start.saturating_add(count).min(export.candidates.len());
        export.candidates[start.min(end)..end]
            .iter()
            .map(|c| self.user_row(&export.request, &export.figures[c.index as usize], c.key))
            .collect()
    }

    /// The users matching the search and filter, their rollup, and their positions after
    /// the cursor (unsorted).
    fn select_users(&self, request: &UsersRequest) -> Result<Selection, QueryError> {
        let range = validate::range(request.range)?;
        validate::trend_buckets(&request.trend_buckets)?;
        let needle = validate::search(request.search.as_deref())?;
        if request.previous_period {
            previous_period(range)?;
        }
        let filter = if request.filter.is_empty() {
            None
        } else {
            Some(self.compile_filter(&request.filter)?)
        };
        let order = request.order;
        let after = request
            .after
            .as_deref()
            .map(|c| cursor::decode_users(c, order))
            .transpose()?;

        let (lo, hi) = self.positions(range);
        let (figures, cost_rollup) = with_scratch(|scratch| {
            let mut figures = self.scan_range(scratch, range, lo, hi);
            if let Some(needle) = &needle {
                figures.retain(|f| self.user_matches(f.user, needle));
            }
            if let Some(filter) = &filter {
                let mut extras = Extras::default();
                figures.retain(|f| {
                    self.filter_matches(
                        filter,
                        range,
                        f.user,
                        f.cost,
                        f.errored_sessions,
                        &mut extras,
                    )
                });
            }
            let cost_rollup = self.cost_rollup(scratch, &figures);
            (figures, cost_rollup)
        });
        let cursor_position = after.map(|c| self.cursor_position(order, &c));
        let candidates: Vec<Candidate> = figures
            .iter()
            .enumerate()
            .map(|(i, f)| Candidate {
                key: self.sort_key(order.field, f),
                tie: 2 * i128::from(self.user_order.rank[f.user as usize]),
                index: i as u32,
            })
            .filter(|c| cursor_position.is_none_or(|at| compare(order.direction, c, &at).is_gt()))
            .collect();
        Ok(Selection {
            total_count: figures.len() as u64,
            figures,
            candidates,
            cost_rollup,
        })
    }

    /// Every user's figures over their traces in `range`.
    ///
    /// Each user's traces in range are one contiguous run of their time-ordered list, so the
    /// sums stream memory, the median is a `select_nth_unstable` on a copy of one run of
    /// costs, and distinct sessions are counted in a small per-user range of state, touched
    /// only when the session changes from one trace to the next.
    fn scan_range(
        &self,
        scratch: &mut Scratch,
        range: TimeRange,
        lo: usize,
        hi: usize,
    ) -> Vec<UserFigures> {
        // Stamps: `base + 1` marks users named in range, `base + 1 + i` the i-th user scanned.
        let base = scratch.begin(self.users.len().max(1) as u32);
        scratch.size_stamps([self.users.len(), 0, 0, 0, 0]);
        scratch.size_sessions(self.max_user_sessions as usize);
        let Scratch {
            costs,
            stamps: [user_stamp, ..],
            session_state,
            ..
        } = scratch;

        // Users in id order (the order their lists were allocated in, which streams best):
        // every user, or for a range with fewer rows than there are users, only the users
        // its rows name.
        let candidates: Vec<u32> = if hi - lo < self.users.len() {
            let mut named = Vec::new();
            for &user in &self.rows.user[lo..hi] {
                if user != ANONYMOUS && user_stamp[user as usize] != base + 1 {
                    user_stamp[user as usize] = base + 1;
                    named.push(user);
                }
            }
            named.sort_unstable();
            named
        } else {
            (0..self.users.len() as u32).collect()
        };

        let mut figures = Vec::new();
        for (i, &user) in candidates.iter().enumerate() {
            let traces = window(self.user_traces(user), range);
            let (Some(first), Some(last)) = (traces.first(), traces.last()) else {
                continue;
            };
            let mut f = UserFigures {
                cost: 0,
                median2: 0,
                first_ns: first.start,
                last_ns: last.start,
                input: 0,
                output: 0,
                cached: 0,
                user,
                traces: traces.len() as u32,
                sessions: 0,
                errored_sessions: 0,
            };
            // A session counted for this user holds `stamp << 1 | errored`.
            let counted = (base + 1 + i as u32) << 1;
            let mut previous_session = NO_ID;
            let mut previous_errored = false;
            costs.clear();
            for t in traces {
                costs.push(t.cost);
                f.cost += i128::from(t.cost);
                f.input = f.input.saturating_add(t.input);
                f.output = f.output.saturating_add(t.output);
                f.cached = f.cached.saturating_add(t.cached);
                if t.user_session == previous_session && (previous_errored || !t.errored) {
                    continue;
                }
                let state = &mut session_state[t.user_session as usize];
                let errored = u32::from(t.errored);
                if *state & !1 != counted {
                    *state = counted | errored;
                    f.sessions += 1;
                    f.errored_sessions += errored;
                } else if errored > *state & 1 {
                    *state |= 1;
                    f.errored_sessions += 1;
                }
                previous_session = t.user_session;
                previous_errored = *state & 1 == 1;
            }
            f.median2 = median2(costs);
            figures.push(f);
        }
        figures
    }

    /// Sum of sums, mean of per-user averages, median of per-user medians. The averages are
    /// summed in user id order, so the float result does not depend on scan order.
    fn cost_rollup(&self, scratch: &mut Scratch, figures: &[UserFigures]) -> CostStats {
        if figures.is_empty() {
            return CostStats::default();
        }
        let base = scratch.begin(1);
        scratch.size_stamps([0, self.users.len(), 0, 0, 0]);
        scratch.size_by_rank(self.users.len());
        let Scratch {
            stamps: [_, rank_stamp, ..],
            by_rank,
            ..
        } = scratch;
        let mut sum = 0i128;
        for f in figures {
            sum += f.cost;
            let rank = self.user_order.rank[f.user as usize] as usize;
            rank_stamp[rank] = base + 1;
            by_rank[rank] = average_usd(f.cost, u64::from(f.traces));
        }
        let average_sum: f64 = (0..self.users.len())
            .filter(|&rank| rank_stamp[rank] == base + 1)
            .map(|rank| by_rank[rank])
            .sum();
        let mut medians: Vec<i128> = figures.iter().map(|f| f.median2).collect();
        CostStats {
            sum: usd(sum),
            average: average_sum / figures.len() as f64,
            median: median_of_median2(&mut medians),
        }
    }

    /// Case-insensitive substring of the user id or the lifetime email; `needle` is lowercase.
    fn user_matches(&self, user: u32, needle: &str) -> bool {
        self.users_lower.get(user).contains(needle)
            || self
                .emails_lower
                .get(self.by_user.email[user as usize])
                .contains(needle)
    }

    /// The exact sort key of a user under `field`, as an integer with the field's numeric
    /// order. Strings are mapped to twice their rank in code point order.
    fn sort_key(&self, field: UserOrderField, f: &UserFigures) -> i128 {
        match field {
            UserOrderField::LastSeen => i128::from(f.last_ns),
            UserOrderField::FirstSeen => i128::from(f.first_ns),
            UserOrderField::Traces => i128::from(f.traces),
            UserOrderField::Sessions => i128::from(f.sessions),
            UserOrderField::ErroredSessions => i128::from(f.errored_sessions),
            UserOrderField::ErrorRate => {
                float_key(ratio(u64::from(f.errored_sessions), u64::from(f.sessions)))
            }
            UserOrderField::CostSum => f.cost,
            UserOrderField::CostAverage => float_key(average_usd(f.cost, u64::from(f.traces))),
            UserOrderField::CostMedian => f.median2,
            UserOrderField::Tokens => i128::from(f.input.saturating_add(f.output)),
            UserOrderField::UserId => 2 * i128::from(self.user_order.rank[f.user as usize]),
            UserOrderField::Email => {
                let email = self.by_user.email[f.user as usize];
                2 * i128::from(self.email_order.rank[email as usize])
            }
        }
    }

    /// The cursor's place in the current order. Its strings need not exist any more: they
    /// land between the neighbouring ranks, so "strictly after" stays exact.
    fn cursor_position(&self, order: UserOrder, cursor: &UsersCursor) -> Candidate {
        let tie = self
            .user_order
            .scaled_position(&self.users, &cursor.user_id);
        let key = match &cursor.key {
            UsersKey::Number(n) => *n,
            UsersKey::Text(email) => self.email_order.scaled_position(&self.emails, email),
            UsersKey::UserId => tie,
        };
        debug_assert!(matches!(
            (&cursor.key, order.field),
            (UsersKey::UserId, UserOrderField::UserId)
                | (UsersKey::Text(_), UserOrderField::Email)
                | (UsersKey::Number(_), _)
        ));
        Candidate {
            key,
            tie,
            index: NO_ID,
        }
    }

    fn user_row(&self, request: &UsersRequest, f: &UserFigures, key: i128) -> UserRow {
        let user_id = self.users.resolve(f.user);
        let email = self.user_email(f.user);
        let traces = window(self.user_traces(f.user), request.range);
        let trends = request
            .trend_buckets
            .iter()
            .map(|&buckets| {
                let mut counts = vec![0u64; buckets as usize];
                for t in traces {
                    counts[trend_slice(request.range, buckets, t.start)] += 1;
                }
                counts
            })
            .collect();
        let cursor_key = match request.order.field {
            UserOrderField::UserId => UsersKey::UserId,
            UserOrderField::Email => UsersKey::Text(email.unwrap_or_default().to_owned()),
            _ => UsersKey::Number(key),
        };
        let trace_count = u64::from(f.traces);
        UserRow {
            user_id: user_id.to_owned(),
            email: email.map(str::to_owned),
            first_seen_ns: f.first_ns,
            last_seen_ns: f.last_ns,
            traces: trace_count,
            sessions: u64::from(f.sessions),
            errored_sessions: u64::from(f.errored_sessions),
            error_rate: ratio(u64::from(f.errored_sessions), u64::from(f.sessions)),
            cost: CostStats {
                sum: usd(f.cost),
                average: average_usd(f.cost, trace_count),
                median: median2_usd(f.median2),
            },
            tokens: TokenUsage::new(f.input, f.output, f.cached),
            trends,
            previous_period: request
                .previous_period
                .then(|| previous_period(request.range).ok())
                .flatten()
                .map(|previous| self.period_totals(f.user, previous)),
            cursor: cursor::encode_users(request.order, &cursor_key, user_id),
        }
    }
}

/// The users table's total order: key in the requested direction, then user id ascending.
fn compare(direction: OrderDirection, a: &Candidate, b: &Candidate) -> Ordering {
    let by_key = a.key.cmp(&b.key);
    let by_key = match direction {
        OrderDirection::Asc => by_key,
        OrderDirection::Desc => by_key.reverse(),
    };
    by_key.then(a.tie.cmp(&b.tie))
}
