//! One user's sessions (SPEC §4.6): per (user, session) pair, only that user's traces in
//! the window count.

use std::cmp::Ordering;

use crate::api::{SessionRow, SessionsPage, SessionsRequest, TokenUsage};
use crate::cursor::{self, SessionsCursor};
use crate::error::QueryError;
use crate::intern::NO_ID;
use crate::numbers::{NS_PER_MS, usd};
use crate::snapshot::Snapshot;
use crate::validate;

#[derive(Debug, Clone, Copy)]
struct SessionFigures {
    session: u32,
    started_ns: i64,
    ended_ns: i64,
    traces: u64,
    errored_traces: u64,
    cost: i128,
    input: i64,
    output: i64,
    cached: i64,
}

impl Snapshot {
    /// A page of the user's sessions, newest start first, ties by session id ascending.
    /// An unknown user has an empty page. O(k log k) for the user's k traces in the window.
    pub fn sessions(&self, request: &SessionsRequest) -> Result<SessionsPage, QueryError> {
        let range = validate::optional_range(request.range)?;
        let page_size = validate::page_size(request.first)?;
        let after = request
            .after
            .as_deref()
            .map(cursor::decode_sessions)
            .transpose()?;
        let Some(user) = self.find_user(&request.user_id) else {
            return Ok(SessionsPage {
                rows: Vec::new(),
                has_next_page: false,
                total_count: 0,
            });
        };
        let own = self.user_traces_in(user, range);

        // Session figures by the session's index among the user's sessions.
        let mut index = vec![NO_ID; self.max_user_sessions as usize];
        let mut sessions: Vec<SessionFigures> = Vec::new();
        for t in own {
            let slot = &mut index[t.user_session as usize];
            if *slot == NO_ID {
                *slot = sessions.len() as u32;
                sessions.push(SessionFigures {
                    session: t.session,
                    // Traces come in time order, so the first one seen starts the session.
                    started_ns: t.start,
                    ended_ns: t.end,
                    traces: 0,
                    errored_traces: 0,
                    cost: 0,
                    input: 0,
                    output: 0,
                    cached: 0,
                });
            }
            let s = &mut sessions[*slot as usize];
            s.ended_ns = s.ended_ns.max(t.end);
            s.traces += 1;
            s.errored_traces += u64::from(t.errored);
            s.cost += i128::from(t.cost);
            s.input = s.input.saturating_add(t.input);
            s.output = s.output.saturating_add(t.output);
            s.cached = s.cached.saturating_add(t.cached);
        }
        if request.errored_only {
            sessions.retain(|s| s.errored_traces > 0);
        }
        let total_count = sessions.len() as u64;

        let order = |a: &SessionFigures, b: &SessionFigures| self.session_order(a, b);
        if let Some(after) = &after {
            sessions.retain(|s| self.is_after(s, after));
        }
        let has_next_page = sessions.len() > page_size;
        if has_next_page {
            sessions.select_nth_unstable_by(page_size, order);
            sessions.truncate(page_size);
        }
        sessions.sort_unstable_by(order);

        let rows = sessions
            .iter()
            .map(|s| {
                let session_id = self.sessions.resolve(s.session);
                SessionRow {
                    session_id: session_id.to_owned(),
                    started_ns: s.started_ns,
                    ended_ns: s.ended_ns,
                    duration_ms: (i128::from(s.ended_ns) - i128::from(s.started_ns)) as f64
                        / NS_PER_MS,
                    traces: s.traces,
                    errored_traces: s.errored_traces,
                    errored: s.errored_traces > 0,
                    cost: usd(s.cost),
                    tokens: TokenUsage::new(s.input, s.output, s.cached),
                    cursor: cursor::encode_sessions(s.started_ns, session_id),
                }
            })
            .collect();
        Ok(SessionsPage {
            rows,
            has_next_page,
            total_count,
        })
    }

    /// Newest start first, then session id ascending.
    fn session_order(&self, a: &SessionFigures, b: &SessionFigures) -> Ordering {
        b.started_ns.cmp(&a.started_ns).then_with(|| {
            self.sessions
                .resolve(a.session)
                .cmp(self.sessions.resolve(b.session))
        })
    }

    fn is_after(&self, s: &SessionFigures, cursor: &SessionsCursor) -> bool {
        match s.started_ns.cmp(&cursor.started_ns) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => self.sessions.resolve(s.session) > cursor.session_id.as_str(),
        }
    }
}
