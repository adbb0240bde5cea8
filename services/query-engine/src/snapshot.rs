//! The snapshot: one project's traces twice over — slim columns sorted by (start_ns,
//! trace_id) for figures across users, and each user's own time-ordered list for figures
//! per user — plus the interners and per-trace slots that keep both current under upserts.
//! Queries live in the `query` modules.

use std::collections::BTreeSet;

use crate::hash::FastMap;

use crate::api::TimeRange;
use crate::extras::{Extras, ExtrasArena, IssueRef, ModelCalls, ToolCalls};
use crate::intern::{Interner, NO_ID, StrList};
use crate::row::TraceRow;
use crate::trace_index::TraceIndex;

/// The user (and pair) id of an anonymous trace.
pub(crate) const ANONYMOUS: u32 = NO_ID;
/// Email id 0 is the empty string, which stands for "no email" (an empty email is absent).
pub(crate) const NO_EMAIL: u32 = 0;

/// Row-major columns, sorted by (start_ns, trace_id): a time range is a contiguous run.
/// They hold what the overview counts across users; everything else is per user.
#[derive(Debug, Default, Clone)]
pub(crate) struct Columns {
    pub start: Vec<i64>,
    /// Interned user id, `ANONYMOUS` for none.
    pub user: Vec<u32>,
    /// Interned session id.
    pub session: Vec<u32>,
    /// Interned (user, session) pair: sessions belong to a user, so a session id shared by
    /// two users is two sessions in user figures. `ANONYMOUS` for anonymous traces.
    pub pair: Vec<u32>,
    pub errored: Vec<bool>,
    /// The trace's stable slot (see `Slots`).
    pub slot: Vec<u32>,
}

impl Columns {
    pub(crate) fn len(&self) -> usize {
        self.start.len()
    }

    fn memory_bytes(&self) -> usize {
        self.start.capacity() * 8
            + self.user.capacity() * 4
            + self.session.capacity() * 4
            + self.pair.capacity() * 4
            + self.errored.capacity()
            + self.slot.capacity() * 4
    }
}

/// One trace of a user, in the user's own time-ordered list. Everything a per-user figure
/// reads is here, so the users table and every per-user query stream contiguous memory.
/// 64 bytes: one cache line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserTrace {
    pub start: i64,
    pub end: i64,
    pub cost: i64,
    pub input: i64,
    pub output: i64,
    pub cached: i64,
    /// The session's index among this user's sessions: distinct counts per user then touch
    /// a small per-user range of scratch state instead of one spread over every session.
    pub user_session: u32,
    pub session: u32,
    pub slot: u32,
    pub errored: bool,
    /// The trace links issues or behaviours, so its extras are worth decoding for them.
    pub has_links: bool,
}

/// Per-trace facts that do not move when rows are re-sorted: a slot is assigned when a
/// trace first arrives and keeps it across replacements.
#[derive(Debug, Default, Clone)]
struct Slots {
    trace_id: Vec<[u8; 16]>,
    by_trace_id: TraceIndex,
    /// Slot → current position in `Columns`.
    position: Vec<u32>,
    /// The trace's own email id (`NO_EMAIL` for none).
    email: Vec<u32>,
    /// Offset of the trace's record in the extras arena.
    extras: Vec<u64>,
}

impl Slots {
    fn memory_bytes(&self) -> usize {
        self.trace_id.capacity() * 16
            + self.by_trace_id.memory_bytes()
            + self.position.capacity() * 4
            + self.email.capacity() * 4
            + self.extras.capacity() * 8
    }
}

/// Ids of an interner in string order (binary, i.e. code point order), and each id's rank.
#[derive(Debug, Default, Clone)]
pub(crate) struct SortedIds {
    pub sorted: Vec<u32>,
    pub rank: Vec<u32>,
}

impl SortedIds {
    /// Merges the ids interned since the last call into the order.
    fn extend(&mut self, interner: &Interner) {
        let known = self.sorted.len();
        if interner.len() == known {
            return;
        }
        let mut fresh: Vec<u32> = (known as u32..interner.len() as u32).collect();
        fresh.sort_unstable_by(|&a, &b| interner.resolve(a).cmp(interner.resolve(b)));
        let mut merged = Vec::with_capacity(interner.len());
        let (mut i, mut j) = (0, 0);
        while i < self.sorted.len() && j < fresh.len() {
            if interner.resolve(self.sorted[i]) <= interner.resolve(fresh[j]) {
                merged.push(self.sorted[i]);
                i += 1;
            } else {
                merged.push(fresh[j]);
                j += 1;
            }
        }
        merged.extend_from_slice(&self.sorted[i..]);
        merged.extend_from_slice(&fresh[j..]);
        self.sorted = merged;
        self.rank = vec![0; interner.len()];
        for (rank, &id) in self.sorted.iter().enumerate() {
            self.rank[id as usize] = rank as u32;
        }
    }

    /// Where `s` falls in the order, on the scale where id `x` sits at `2 × rank(x)`:
    /// `2 × rank` when `s` is interned, else an odd value between its neighbours.
    pub(crate) fn scaled_position(&self, interner: &Interner, s: &str) -> i128 {
        let below = self.sorted.partition_point(|&id| interner.resolve(id) < s);
        let exists = self
            .sorted
            .get(below)
            .is_some_and(|&id| interner.resolve(id) == s);
        2 * below as i128 - i128::from(!exists)
    }

    fn memory_bytes(&self) -> usize {
        (self.sorted.capacity() + self.rank.capacity()) * 4
    }
}

/// Per-user traces and lifetime facts, updated for the users an upsert touches.
#[derive(Debug, Default, Clone)]
pub(crate) struct UserIndex {
    /// Each user's traces sorted by (start, trace id).
    pub traces: Vec<Vec<UserTrace>>,
    /// Lifetime email id: the email of the user's most recent trace that has one.
    pub email: Vec<u32>,
    /// First trace time of each user (`i64::MAX` for a user with no trace any more).
    pub first_seen: Vec<i64>,
    /// First trace time of every user with a trace, sorted, for `new_users`.
    pub first_seen_sorted: Vec<i64>,
}

impl UserIndex {
    fn memory_bytes(&self) -> usize {
        self.traces.capacity() * size_of::<Vec<UserTrace>>()
            + self
                .traces
                .iter()
                .map(|t| t.capacity() * size_of::<UserTrace>())
                .sum::<usize>()
            + self.email.capacity() * 4
            + (self.first_seen.capacity() + self.first_seen_sorted.capacity()) * 8
    }
}

/// One issue title candidate: (trace time, trace id, title id). The greatest is the title of
/// the project's most recent trace giving one, ties broken by the larger trace id.
type TitleCandidate = (i64, [u8; 16], u32);

/// An in-memory snapshot of one project's traces that answers every figure of the users
/// page exactly (SPEC §4).
///
/// Queries take `&self` and allocate their own scratch space, so one snapshot can serve
/// several threads at once; `upsert` takes `&mut self`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) users: Interner,
    pub(crate) users_lower: StrList,
    pub(crate) sessions: Interner,
    pub(crate) emails: Interner,
    pub(crate) emails_lower: StrList,
    /// Model, provider, tool, issue and behaviour names and issue titles.
    pub(crate) names: Interner,
    /// (user, session) → (pair id, index among the user's sessions).
    pairs: FastMap<(u32, u32), (u32, u32)>,
    /// Number of distinct sessions each user ever had (the next `user_session` index).
    user_session_count: Vec<u32>,
    /// The largest `user_session_count`.
    pub(crate) max_user_sessions: u32,
    model_keys: FastMap<(u32, u32), u32>,
    /// Model key → (model name id or `NO_ID`, provider name id or `NO_ID`).
    pub(crate) model_key_list: Vec<(u32, u32)>,
    pub(crate) rows: Columns,
    slots: Slots,
    arena: ExtrasArena,
    issue_titles: FastMap<u32, BTreeSet<TitleCandidate>>,
    pub(crate) by_user: UserIndex,
    pub(crate) user_order: SortedIds,
    pub(crate) email_order: SortedIds,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new()
    }
}

/// One incoming row, interned, before it is merged into the columns.
struct FreshRow {
    trace_id: [u8; 16],
    start: i64,
    end: i64,
    user: u32,
    session: u32,
    pair: u32,
    user_session: u32,
    errored: bool,
    cost: i64,
    input: i64,
    output: i64,
    cached: i64,
    slot: u32,
    has_links: bool,
}

impl FreshRow {
    fn user_trace(&self) -> UserTrace {
        UserTrace {
            start: self.start,
            end: self.end,
            cost: self.cost,
            input: self.input,
            output: self.output,
            cached: self.cached,
            user_session: self.user_session,
            session: self.session,
            slot: self.slot,
            errored: self.errored,
            has_links: self.has_links,
        }
    }
}

impl Snapshot {
    pub fn new() -> Self {
        let mut emails = Interner::default();
        let mut emails_lower = StrList::default();
        let empty = emails.intern("");
        debug_assert_eq!(empty, NO_EMAIL);
        emails_lower.push("");
        Self {
            users: Interner::default(),
            users_lower: StrList::default(),
            sessions: Interner::default(),
            emails,
            emails_lower,
            names: Interner::default(),
            pairs: FastMap::default(),
            user_session_count: Vec::new(),
            max_user_sessions: 0,
            model_keys: FastMap::default(),
            model_key_list: Vec::new(),
            rows: Columns::default(),
            slots: Slots::default(),
            arena: ExtrasArena::default(),
            issue_titles: FastMap::default(),
            by_user: UserIndex::default(),
            user_order: SortedIds::default(),
            email_order: SortedIds::default(),
        }
    }

    /// Number of traces held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.len() == 0
    }

    /// Approximate heap bytes held, for capacity planning.
    pub fn memory_bytes(&self) -> usize {
        let pair_entry = 4 + 4 + 4 + 4 + 1;
        self.users.memory_bytes()
            + self.users_lower.memory_bytes()
            + self.sessions.memory_bytes()
            + self.emails.memory_bytes()
            + self.emails_lower.memory_bytes()
            + self.names.memory_bytes()
            + self.pairs.capacity() * pair_entry
            + self.user_session_count.capacity() * 4
            + self.model_keys.capacity() * (4 + 4 + 4 + 1)
            + self.model_key_list.capacity() * 8
            + self.rows.memory_bytes()
            + self.slots.memory_bytes()
            + self.arena.memory_bytes()
            + self
                .issue_titles
                .values()
                .map(|set| 16 + set.len() * (size_of::<TitleCandidate>() + 8))
                .sum::<usize>()
            + self.by_user.memory_bytes()
            + self.user_order.memory_bytes()
            + self.email_order.memory_bytes()
    }

    /// Inserts new traces and replaces existing ones (same `trace_id`); any field may change,
    /// including `start_ns`, `user_id` and `session_id`. Within one batch the last copy of a
    /// trace wins. An empty `user_id`, `email` or issue title counts as absent.
    ///
    /// Cost: O(k log k) for k rows (interning, sorting), plus moving the rows after the
    /// earliest changed position in the time-sorted columns (run by run, in place), plus, for
    /// each user the batch touches, moving that user's traces after their earliest change.
    /// Recent changes therefore cost little however large the snapshot is.
    pub fn upsert(&mut self, rows: Vec<TraceRow>) {
        if rows.is_empty() {
            return;
        }
        // The last copy of each trace in the batch wins.
        let mut last_copy: FastMap<[u8; 16], usize> =
            FastMap::with_capacity_and_hasher(rows.len(), Default::default());
        for (i, row) in rows.iter().enumerate() {
            last_copy.insert(row.trace_id, i);
        }
        let mut order: Vec<(i64, [u8; 16], u32)> = rows
            .iter()
            .enumerate()
            .filter(|(i, row)| last_copy.get(&row.trace_id) == Some(i))
            .map(|(i, row)| (row.start_ns, row.trace_id, i as u32))
            .collect();
        drop(last_copy);
        // Staging in time order hands out new session, pair and slot ids in time order, so
        // a scan over a time range touches their per-id state (and extras) nearly in order.
        // Sorting keys rather than rows avoids moving the rows around.
        order.sort_unstable();
        let mut rows: Vec<Option<TraceRow>> = rows.into_iter().map(Some).collect();
        self.slots
            .by_trace_id
            .reserve(order.len(), &self.slots.trace_id);
        let mut fresh = Vec::with_capacity(order.len());
        let mut replaced = Vec::new();
        let mut scratch = Extras::default();
        for &(_, _, i) in &order {
            let row = rows[i as usize]
                .take()
                .expect("each kept row is staged once");
            let (fresh_row, old_position) = self.stage(row, &mut scratch);
            replaced.extend(old_position);
            fresh.push(fresh_row);
        }
        replaced.sort_unstable();
        // Where the replaced copies sit in their (old) users' lists, before positions move.
        let mut replaced_in_users: Vec<(u32, u32, i64)> = replaced
            .iter()
            .map(|&p| (self.rows.user[p], self.rows.slot[p], self.rows.start[p]))
            .filter(|&(user, _, _)| user != ANONYMOUS)
            .collect();
        self.merge(&fresh, &replaced);
        self.update_users(&fresh, &mut replaced_in_users);
        self.user_order.extend(&self.users);
        self.email_order.extend(&self.emails);
        if self.arena.needs_compaction() {
            self.arena.compact(&mut self.slots.extras);
        }
    }

    /// Interns one row, stores its slot-level facts, and returns its column values plus the
    /// position of the copy it replaces.
    fn stage(&mut self, row: TraceRow, scratch: &mut Extras) -> (FreshRow, Option<usize>) {
        let user = match row.user_id.as_deref() {
            None | Some("") => ANONYMOUS,
            Some(user_id) => self.intern_user(user_id),
        };
        let email = match row.email.as_deref() {
            None | Some("") => NO_EMAIL,
            Some(email) => self.intern_email(email),
        };
        let session = self.sessions.intern(&row.session_id);
        let (pair, user_session) = if user == ANONYMOUS {
            (ANONYMOUS, ANONYMOUS)
        } else {
            let next = self.pairs.len() as u32;
            let counts = &mut self.user_session_count;
            let ids = *self.pairs.entry((user, session)).or_insert_with(|| {
                if counts.len() <= user as usize {
                    counts.resize(user as usize + 1, 0);
                }
                let local = counts[user as usize];
                counts[user as usize] += 1;
                (next, local)
            });
            self.max_user_sessions = self.max_user_sessions.max(ids.1 + 1);
            ids
        };

        let found = self
            .slots
            .by_trace_id
            .get(&row.trace_id, &self.slots.trace_id);
        let (slot, old_position) = match found {
            Some(slot) => {
                let old_position = self.slots.position[slot as usize] as usize;
                let old_start = self.rows.start[old_position];
                let len = self.arena.decode(self.slots.extras[slot as usize], scratch);
                self.arena.retire(len);
                for issue in &scratch.issues {
                    if issue.title != NO_ID {
                        self.forget_title(issue.issue, (old_start, row.trace_id, issue.title));
                    }
                }
                (slot, Some(old_position))
            }
            None => {
                let slot = u32::try_from(self.slots.trace_id.len())
                    .ok()
                    .filter(|&s| s != u32::MAX)
                    .expect("a snapshot holds fewer than 2^32 - 1 traces");
                self.slots.trace_id.push(row.trace_id);
                self.slots.by_trace_id.insert(slot, &self.slots.trace_id);
                self.slots.position.push(0);
                self.slots.email.push(NO_EMAIL);
                self.slots.extras.push(0);
                (slot, None)
            }
        };

        scratch.clear();
        for m in &row.models {
            let model = m.model.as_deref().map_or(NO_ID, |s| self.names.intern(s));
            let provider = m
                .provider
                .as_deref()
                .map_or(NO_ID, |s| self.names.intern(s));
            scratch.models.push(ModelCalls {
                key: self.model_key(model, provider),
                calls: m.calls,
                input: m.input_tokens,
                output: m.output_tokens,
                cached: m.cached_input_tokens,
                cost: m.cost_nano,
            });
        }
        for t in &row.tools {
            scratch.tools.push(ToolCalls {
                tool: self.names.intern(&t.tool),
                calls: t.calls,
                errors: t.errors,
            });
        }
        for issue in &row.issues {
            let id = self.names.intern(&issue.id);
            let title = match issue.title.as_deref() {
                None | Some("") => NO_ID,
                Some(title) => self.names.intern(title),
            };
            // A trace links an issue once; should a row repeat one, its first link counts.
            if !scratch.issues.iter().any(|i| i.issue == id) {
                scratch.issues.push(IssueRef { issue: id, title });
            }
        }
        for issue in &scratch.issues {
            if issue.title != NO_ID {
                self.issue_titles.entry(issue.issue).or_default().insert((
                    row.start_ns,
                    row.trace_id,
                    issue.title,
                ));
            }
        }
        for behaviour in &row.behaviours {
            let id = self.names.intern(behaviour);
            if !scratch.behaviours.contains(&id) {
                scratch.behaviours.push(id);
            }
        }
        self.slots.extras[slot as usize] = self.arena.append(scratch);
        self.slots.email[slot as usize] = email;

        let fresh = FreshRow {
            trace_id: row.trace_id,
            start: row.start_ns,
            end: row.end_ns,
            user,
            session,
            pair,
            user_session,
            errored: row.errored,
            cost: row.cost_nano,
            input: row.input_tokens,
            output: row.output_tokens,
            cached: row.cached_input_tokens,
            slot,
            has_links: !scratch.issues.is_empty() || !scratch.behaviours.is_empty(),
        };
        (fresh, old_position)
    }

    fn intern_user(&mut self, user_id: &str) -> u32 {
        let id = self.users.intern(user_id);
        if id as usize == self.users_lower.len() {
            self.users_lower.push(&user_id.to_lowercase());
        }
        id
    }

    fn intern_email(&mut self, email: &str) -> u32 {
        let id = self.emails.intern(email);
        if id as usize == self.emails_lower.len() {
            self.emails_lower.push(&email.to_lowercase());
        }
        id
    }

    fn model_key(&mut self, model: u32, provider: u32) -> u32 {
        let next = self.model_key_list.len() as u32;
        let key = *self.model_keys.entry((model, provider)).or_insert(next);
        if key == next {
            self.model_key_list.push((model, provider));
        }
        key
    }

    fn forget_title(&mut self, issue: u32, candidate: TitleCandidate) {
        if let Some(set) = self.issue_titles.get_mut(&issue) {
            set.remove(&candidate);
            if set.is_empty() {
                self.issue_titles.remove(&issue);
            }
        }
    }

    /// The title of `issue` on the project's most recent trace that gives one.
    pub(crate) fn issue_title(&self, issue: u32) -> Option<&str> {
        let (_, _, title) = self.issue_titles.get(&issue)?.last()?;
        Some(self.names.resolve(*title))
    }

    fn trace_id_at(&self, position: usize) -> &[u8; 16] {
        &self.slots.trace_id[self.rows.slot[position] as usize]
    }

    /// Decodes the extras of the trace in `slot` into `out`.
    pub(crate) fn extras_of(&self, slot: u32, out: &mut Extras) {
        self.arena.decode(self.slots.extras[slot as usize], out);
    }

    /// First position at or after `from` whose (start, trace id) is not below the given
    /// key; every position before `from` is below the key.
    fn lower_bound_from(&self, from: usize, start: i64, trace_id: &[u8; 16]) -> usize {
        let starts = &self.rows.start;
        let lo = from + gallop(&starts[from..], |&s| s < start);
        let hi = lo + gallop(&starts[lo..], |&s| s <= start);
        let (mut a, mut b) = (lo, hi);
        while a < b {
            let mid = a + (b - a) / 2;
            if self.trace_id_at(mid) < trace_id {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        a
    }

    /// Drops the `replaced` positions (sorted) and inserts `fresh` (sorted) in (start, trace
    /// id) order, in place: one forward pass closes the gaps, one backward pass opens room
    /// for the inserts, each moving only the rows after the first change, run by run.
    fn merge(&mut self, fresh: &[FreshRow], replaced: &[usize]) {
        let n = self.rows.len();
        // Insertion points, first among the old rows, then among the rows left after the
        // removals (the removed rows before each point no longer count).
        let mut insert_at: Vec<usize> = Vec::with_capacity(fresh.len());
        let (mut from, mut removed_before) = (0, 0);
        for f in fresh {
            // Fresh rows are sorted, so each search starts where the previous one ended and
            // gallops: spread inserts probe nearby rows instead of 20 cache misses each.
            from = self.lower_bound_from(from, f.start, &f.trace_id);
            removed_before += replaced[removed_before..].partition_point(|&p| p < from);
            insert_at.push(from - removed_before);
        }
        let first = insert_at
            .first()
            .copied()
            .unwrap_or(n)
            .min(replaced.first().copied().unwrap_or(n));

        let rows = &mut self.rows;
        splice(&mut rows.start, replaced, &insert_at, fresh, |f| f.start);
        splice(&mut rows.user, replaced, &insert_at, fresh, |f| f.user);
        splice(&mut rows.session, replaced, &insert_at, fresh, |f| {
            f.session
        });
        splice(&mut rows.pair, replaced, &insert_at, fresh, |f| f.pair);
        splice(&mut rows.errored, replaced, &insert_at, fresh, |f| {
            f.errored
        });
        splice(&mut rows.slot, replaced, &insert_at, fresh, |f| f.slot);
        assert!(
            rows.len() <= u32::MAX as usize,
            "a snapshot holds fewer than 2^32 traces"
        );
        for position in first..rows.len() {
            self.slots.position[rows.slot[position] as usize] = position as u32;
        }
    }

    /// Applies the batch to the per-user lists of the users it touches: drops the replaced
    /// copies and merges the fresh rows in (start, trace id) order, rewriting each list only
    /// from its earliest change on (usually its last few entries); then refreshes those
    /// users' lifetime email and first-seen time. Untouched users cost nothing.
    ///
    /// `replaced` holds (old user, slot, old start) of each replaced copy.
    fn update_users(&mut self, fresh: &[FreshRow], replaced: &mut [(u32, u32, i64)]) {
        let user_count = self.users.len();
        let index = &mut self.by_user;
        index.traces.resize_with(user_count, Vec::new);
        index.email.resize(user_count, NO_EMAIL);
        index.first_seen.resize(user_count, i64::MAX);

        // Fresh rows are in time order; a stable sort by user keeps it within each user.
        let mut incoming: Vec<u32> = (0..fresh.len() as u32)
            .filter(|&i| fresh[i as usize].user != ANONYMOUS)
            .collect();
        incoming.sort_by_key(|&i| fresh[i as usize].user);
        replaced.sort_unstable();
        let mut replaced_slots = vec![0u64; self.slots.trace_id.len().div_ceil(64)];
        for &(_, slot, _) in replaced.iter() {
            replaced_slots[slot as usize / 64] |= 1 << (slot % 64);
        }
        let mut touched: Vec<u32> = replaced.iter().map(|&(user, _, _)| user).collect();
        touched.extend(incoming.iter().map(|&i| fresh[i as usize].user));
        touched.sort_unstable();
        touched.dedup();

        let trace_ids = &self.slots.trace_id;
        // Fresh row before an old trace in (start, trace id) order; ids only break ties.
        let before = |f: &FreshRow, t: &UserTrace| {
            f.start < t.start || (f.start == t.start && f.trace_id < trace_ids[t.slot as usize])
        };
        let is_replaced =
            |t: &UserTrace| replaced_slots[t.slot as usize / 64] & (1 << (t.slot % 64)) != 0;
        let mut old_first_seen = Vec::new();
        let mut new_first_seen = Vec::new();
        let (mut next_incoming, mut next_replaced) = (0, 0);
        for &user in &touched {
            let from = next_incoming;
            next_incoming += incoming[from..].partition_point(|&i| fresh[i as usize].user <= user);
            let arriving = &incoming[from..next_incoming];
            let from = next_replaced;
            next_replaced += replaced[from..].partition_point(|&(u, _, _)| u <= user);
            let leaving = &replaced[from..next_replaced];

            // Everything before the earliest leaving or arriving trace stays in place.
            let earliest = leaving
                .iter()
                .map(|&(_, _, start)| start)
                .chain(arriving.first().map(|&i| fresh[i as usize].start))
                .min()
                .unwrap_or(i64::MAX);
            let list = &mut index.traces[user as usize];
            let cut = list.partition_point(|t| t.start < earliest);
            if !leaving.is_empty() {
                let mut write = cut;
                for read in cut..list.len() {
                    if !is_replaced(&list[read]) {
                        list[write] = list[read];
                        write += 1;
                    }
                }
                list.truncate(write);
            }
            // Backward merge: old traces move right past the fresh ones that precede them;
            // appending later traces (the common case) moves nothing.
            if let Some(&last) = arriving.last() {
                let mut read = list.len();
                list.resize(read + arriving.len(), fresh[last as usize].user_trace());
                let mut write = list.len();
                for &i in arriving.iter().rev() {
                    let f = &fresh[i as usize];
                    while read > cut && before(f, &list[read - 1]) {
                        write -= 1;
                        read -= 1;
                        list[write] = list[read];
                    }
                    write -= 1;
                    list[write] = f.user_trace();
                }
            }
            if list.capacity() > 2 * list.len() + 16 {
                list.shrink_to_fit();
            }

            index.email[user as usize] = list
                .iter()
                .rev()
                .map(|t| self.slots.email[t.slot as usize])
                .find(|&e| e != NO_EMAIL)
                .unwrap_or(NO_EMAIL);
            let first = list.first().map_or(i64::MAX, |t| t.start);
            let seen = &mut index.first_seen[user as usize];
            if *seen != first {
                if *seen != i64::MAX {
                    old_first_seen.push(*seen);
                }
                if first != i64::MAX {
                    new_first_seen.push(first);
                }
                *seen = first;
            }
        }
        if !old_first_seen.is_empty() || !new_first_seen.is_empty() {
            old_first_seen.sort_unstable();
            new_first_seen.sort_unstable();
            index.first_seen_sorted =
                replace_sorted(&index.first_seen_sorted, &old_first_seen, &new_first_seen);
        }
    }

    /// Positions `lo..hi` of the traces in `range`: two binary searches.
    pub(crate) fn positions(&self, range: TimeRange) -> (usize, usize) {
        let lo = self.rows.start.partition_point(|&s| s < range.from_ns);
        let hi = lo + self.rows.start[lo..].partition_point(|&s| s < range.to_ns);
        (lo, hi)
    }

    /// A user's traces over their lifetime, in time order.
    pub(crate) fn user_traces(&self, user: u32) -> &[UserTrace] {
        &self.by_user.traces[user as usize]
    }

    /// A user's traces in `range` (or lifetime), in time order: two binary searches.
    pub(crate) fn user_traces_in(&self, user: u32, range: Option<TimeRange>) -> &[UserTrace] {
        let all = self.user_traces(user);
        match range {
            None => all,
            Some(range) => window(all, range),
        }
    }

    /// A known user with at least one trace.
    pub(crate) fn find_user(&self, user_id: &str) -> Option<u32> {
        let user = self.users.get(user_id)?;
        (!self.user_traces(user).is_empty()).then_some(user)
    }

    pub(crate) fn user_email(&self, user: u32) -> Option<&str> {
        match self.by_user.email[user as usize] {
            NO_EMAIL => None,
            email => Some(self.emails.resolve(email)),
        }
    }

    pub(crate) fn pair_count(&self) -> usize {
        self.pairs.len()
    }
}

/// `sorted` without one occurrence of each value of `remove` (all present), plus `add`; every
/// input sorted. One linear merge instead of re-sorting.
fn replace_sorted(sorted: &[i64], remove: &[i64], add: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(sorted.len() + add.len() - remove.len().min(sorted.len()));
    let (mut r, mut a) = (0, 0);
    for &value in sorted {
        if remove.get(r) == Some(&value) {
            r += 1;
            continue;
        }
        while let Some(&new) = add.get(a).filter(|&&new| new < value) {
            out.push(new);
            a += 1;
        }
        out.push(value);
    }
    out.extend_from_slice(&add[a..]);
    out
}

/// `slice.partition_point(below)`, probing 1, 2, 4, … entries from the front first, so a
/// boundary near the front costs a few nearby probes instead of a full binary search.
fn gallop<T>(slice: &[T], below: impl Fn(&T) -> bool) -> usize {
    let mut bound = 1;
    while bound <= slice.len() && below(&slice[bound - 1]) {
        bound *= 2;
    }
    let begin = bound / 2;
    let end = bound.min(slice.len());
    begin + slice[begin..end].partition_point(below)
}

/// The traces of a time-ordered list that fall in `range`.
pub(crate) fn window(traces: &[UserTrace], range: TimeRange) -> &[UserTrace] {
    // Most users lie wholly inside (or outside) a wide range; checking the ends first saves
    // the binary searches, whose probes each miss the cache.
    match (traces.first(), traces.last()) {
        (Some(first), Some(last)) if range.contains(first.start) && range.contains(last.start) => {
            return traces;
        }
        (Some(first), Some(last)) if last.start < range.from_ns || first.start >= range.to_ns => {
            return &[];
        }
        _ => {}
    }
    let a = traces.partition_point(|t| t.start < range.from_ns);
    let b = a + traces[a..].partition_point(|t| t.start < range.to_ns);
    &traces[a..b]
}

/// Removes the `remove` positions (sorted) from `column`, then inserts the fresh rows'
/// values before the (post-removal) positions `insert_at` (sorted), in place.
fn splice<T: Copy>(
    column: &mut Vec<T>,
    remove: &[usize],
    insert_at: &[usize],
    fresh: &[FreshRow],
    value: impl Fn(&FreshRow) -> T,
) {
    if let Some(&first) = remove.first() {
        let mut write = first;
        for (k, &p) in remove.iter().enumerate() {
            let next = remove.get(k + 1).copied().unwrap_or(column.len());
            column.copy_within(p + 1..next, write);
            write += next - p - 1;
        }
        column.truncate(write);
    }
    let Some(first_fresh) = fresh.first() else {
        return;
    };
    let mut read = column.len();
    column.resize(read + fresh.len(), value(first_fresh));
    let mut write = column.len();
    for (f, &at) in fresh.iter().zip(insert_at).rev() {
        column.copy_within(at..read, write - (read - at));
        write -= read - at + 1;
        read = at;
        column[write] = value(f);
    }
}
