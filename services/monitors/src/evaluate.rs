//! The evaluator (docs/spec.md §8): wakes every tick, and for each project whose data
//! generation passed what a monitor last evaluated, evaluates the users whose traces
//! changed since then; every sweep interval, re-evaluates the users a monitor is firing for
//! and every user of `INACTIVE` monitors. Figures are §4.2 users-table rows read from the
//! project's snapshot, the one the users page reads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, OwnedRwLockReadGuard};
use userlens_query_engine::{
    OrderDirection, QueryError, Snapshot, TimeRange, UserFilter, UserOrder, UserOrderField,
    UserRow, UsersRequest,
};
use userlens_storage::StorageError;

use crate::error::MonitorError;
use crate::model::{Condition, usd_to_nano};
use crate::store::{self, EVENT_ALERT, EVENT_RESOLVE, Monitor, NewEvent};

/// Where the evaluator reads a project's figures from: the query role's snapshots.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The project's current data generation.
    fn generation(&self, project_id: i64)
    -> impl Future<Output = Result<i64, StorageError>> + Send;
    /// The project's snapshot, holding at least every row up to `generation`.
    fn snapshot(
        &self,
        project_id: i64,
        generation: i64,
    ) -> impl Future<Output = Result<OwnedRwLockReadGuard<Snapshot>, StorageError>> + Send;
}

#[derive(Debug, Clone)]
pub struct EvaluatorSettings {
    /// How often project generations are checked for new data.
    pub tick: Duration,
    /// How often firing users and `INACTIVE` monitors are re-evaluated regardless of data.
    pub sweep: Duration,
}

impl Default for EvaluatorSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            sweep: Duration::from_secs(60),
        }
    }
}

/// Which users one evaluation of a monitor looks at (firing users are always added).
#[derive(Debug, Clone)]
enum Scope {
    /// Every user with a trace.
    All,
    Users(HashSet<String>),
}

/// One user's figure for one monitor at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub holds: bool,
    /// The figure compared: USD, a rate, traces, or seconds since the latest trace.
    pub value: f64,
    pub sessions: u64,
}

/// Users-table rows of `users` (every user when `None`) for `range`, keyed by user id.
fn rows_for(
    snapshot: &Snapshot,
    range: TimeRange,
    users: Option<&HashSet<String>>,
) -> Result<HashMap<String, UserRow>, QueryError> {
    let base = UsersRequest {
        range,
        search: None,
        order: UserOrder::new(UserOrderField::UserId, OrderDirection::Asc),
        first: 200,
        after: None,
        trend_buckets: Vec::new(),
        filter: UserFilter::default(),
        previous_period: false,
    };
    let mut found = HashMap::new();
    // A few users are found by searching for each; more, or ids the search would trim or
    // refuse, by one pass over every page.
    let searchable = users.filter(|users| {
        users.len() <= 8
            && users
                .iter()
                .all(|u| u.trim() == u && !u.is_empty() && u.chars().count() <= 500)
    });
    match searchable {
        Some(users) => {
            for user in users {
                let mut request = base.clone();
                request.search = Some(user.clone());
                loop {
                    let page = snapshot.users(&request)?;
                    let last = page.rows.last().map(|row| row.cursor.clone());
                    if let Some(row) = page.rows.into_iter().find(|row| &row.user_id == user) {
                        found.insert(row.user_id.clone(), row);
                        break;
                    }
                    match (page.has_next_page, last) {
                        (true, Some(cursor)) => request.after = Some(cursor),
                        _ => break,
                    }
                }
            }
        }
        None => {
            let mut request = base;
            loop {
                let page = snapshot.users(&request)?;
                let last = page.rows.last().map(|row| row.cursor.clone());
                for row in page.rows {
                    if users.is_none_or(|users| users.contains(&row.user_id)) {
                        found.insert(row.user_id.clone(), row);
                    }
                }
                match (page.has_next_page, last) {
                    (true, Some(cursor)) => request.after = Some(cursor),
                    _ => break,
                }
            }
        }
    }
    Ok(found)
}

/// The range a monitor's figures are read over at `now_ns`.
fn figure_range(monitor: &Monitor, now_ns: i64) -> TimeRange {
    match monitor.spec.condition {
        // Lifetime: the latest trace ever.
        Condition::Inactive => TimeRange::new(i64::MIN, i64::MAX),
        _ => TimeRange::new(
            now_ns.saturating_sub(monitor.spec.window_seconds.saturating_mul(1_000_000_000)),
            i64::MAX,
        ),
    }
}

/// The verdict for a user whose figures are `row` (`None`: no trace in the range).
pub fn judge(monitor: &Monitor, row: Option<&UserRow>, now_ns: i64) -> Verdict {
    let spec = &monitor.spec;
    let sessions = row.map_or(0, |row| row.sessions);
    match spec.condition {
        Condition::CostAbove => {
            let cost = row.map_or(0.0, |row| row.cost.sum);
            Verdict {
                holds: usd_to_nano(cost) > usd_to_nano(spec.threshold),
                value: cost,
                sessions,
            }
        }
        Condition::ErrorRateAbove => {
            let errored = row.map_or(0, |row| row.errored_sessions);
            let rate = if sessions == 0 {
                0.0
            } else {
                errored as f64 / sessions as f64
            };
            Verdict {
                holds: i64::try_from(sessions).unwrap_or(i64::MAX) >= spec.min_sessions
                    && rate > spec.threshold,
                value: rate,
                sessions,
            }
        }
        Condition::TracesAbove => {
            let traces = row.map_or(0, |row| row.traces);
            Verdict {
                holds: traces as f64 > spec.threshold,
                value: traces as f64,
                sessions,
            }
        }
        Condition::Inactive => match row {
            None => Verdict {
                holds: false,
                value: 0.0,
                sessions,
            },
            Some(row) => {
                let idle_ns = now_ns.saturating_sub(row.last_seen_ns);
                Verdict {
                    holds: idle_ns >= spec.window_seconds.saturating_mul(1_000_000_000),
                    value: idle_ns as f64 / 1e9,
                    sessions,
                }
            }
        },
    }
}

/// Verdicts of every user in scope (and every firing user) for one monitor.
fn verdicts(
    snapshot: &Snapshot,
    monitor: &Monitor,
    scope: &Scope,
    firing: &HashSet<String>,
    now_ns: i64,
) -> Result<BTreeMap<String, Verdict>, QueryError> {
    let range = figure_range(monitor, now_ns);
    let candidates: Option<HashSet<String>> = match (scope, &monitor.spec.user_id) {
        (_, Some(user)) => Some(HashSet::from([user.clone()])),
        (Scope::All, None) => None,
        (Scope::Users(users), None) => Some(users.union(firing).cloned().collect()),
    };
    let rows = rows_for(snapshot, range, candidates.as_ref())?;
    let mut result = BTreeMap::new();
    let mut judge_user = |user: &String| {
        let verdict = judge(monitor, rows.get(user), now_ns);
        result.insert(user.clone(), verdict);
    };
    match &candidates {
        Some(users) => users.iter().for_each(&mut judge_user),
        None => {
            rows.keys().for_each(&mut judge_user);
            firing.iter().for_each(&mut judge_user);
        }
    }
    Ok(result)
}

/// The JSON body of one event (docs/spec.md §8).
fn event_body(
    monitor: &Monitor,
    user_id: &str,
    kind: &str,
    verdict: &Verdict,
    now_ns: i64,
    episode: i64,
    key: &str,
) -> String {
    let evaluated_at = chrono::DateTime::from_timestamp_nanos(now_ns)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    serde_json::json!({
        "idempotencyKey": key,
        "monitorId": monitor.id,
        "monitorName": monitor.spec.name,
        "event": kind,
        "episode": episode,
        "userId": user_id,
        "condition": monitor.spec.condition.as_str(),
        "threshold": monitor.spec.threshold,
        "windowSeconds": monitor.spec.window_seconds,
        "minSessions": monitor.spec.min_sessions,
        "value": verdict.value,
        "sessions": verdict.sessions,
        "evaluatedAt": evaluated_at,
    })
    .to_string()
}

pub struct Evaluator<S> {
    db: DatabaseConnection,
    source: Arc<S>,
    settings: EvaluatorSettings,
    /// Woken when an event is recorded, so delivery does not wait for its poll.
    delivery: Arc<Notify>,
}

impl<S: SnapshotSource> Evaluator<S> {
    pub fn new(
        db: DatabaseConnection,
        source: Arc<S>,
        settings: EvaluatorSettings,
        delivery: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            source,
            settings,
            delivery,
        }
    }

    /// Evaluates until `shutdown` resolves. Errors are logged; the next tick tries again.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let mut last_sweep = Instant::now();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.settings.tick) => {}
            }
            let sweep = last_sweep.elapsed() >= self.settings.sweep;
            if sweep {
                last_sweep = Instant::now();
            }
            if let Err(error) = self.evaluate_once(sweep).await {
                tracing::warn!(%error, "monitor evaluation failed; retrying at the next tick");
            }
        }
    }

    /// One pass: every monitor behind its project's data, and with `sweep` the time-driven
    /// re-evaluations too. Returns the number of events recorded.
    pub async fn evaluate_once(&self, sweep: bool) -> Result<usize, MonitorError> {
        let monitors = store::enabled_monitors(&self.db).await?;
        let mut by_project: BTreeMap<i64, Vec<Monitor>> = BTreeMap::new();
        for monitor in monitors {
            by_project
                .entry(monitor.project_id)
                .or_default()
                .push(monitor);
        }
        let mut recorded = 0;
        for (project_id, monitors) in by_project {
            recorded += self.evaluate_project(project_id, monitors, sweep).await?;
        }
        if recorded > 0 {
            self.delivery.notify_one();
        }
        Ok(recorded)
    }

    async fn evaluate_project(
        &self,
        project_id: i64,
        monitors: Vec<Monitor>,
        sweep: bool,
    ) -> Result<usize, MonitorError> {
        let generation = self.source.generation(project_id).await?;
        let mut work = Vec::new();
        for monitor in monitors {
            let behind = monitor.evaluated_generation < generation;
            if !behind && !sweep {
                continue;
            }
            let mut scope = if monitor.evaluated_generation <= 0 {
                Scope::All
            } else if behind {
                Scope::Users(
                    store::users_changed_since(&self.db, project_id, monitor.evaluated_generation)
                        .await?
                        .into_iter()
                        .collect(),
                )
            } else {
                Scope::Users(HashSet::new())
            };
            if sweep && monitor.spec.condition == Condition::Inactive {
                scope = Scope::All;
            }
            let firing: HashSet<String> = store::firing_users(&self.db, monitor.id)
                .await?
                .into_iter()
                .collect();
            // Firing users are looked at in a sweep and in a full evaluation; otherwise only
            // the users whose traces changed.
            let also = if sweep || matches!(scope, Scope::All) {
                firing.clone()
            } else {
                HashSet::new()
            };
            let idle = matches!(&scope, Scope::Users(users) if users.is_empty())
                && also.is_empty()
                && monitor.spec.user_id.is_none();
            if idle {
                if behind {
                    store::set_evaluated_generation(&self.db, &monitor, generation).await?;
                }
                continue;
            }
            work.push((monitor, scope, firing, also, behind));
        }
        if work.is_empty() {
            return Ok(0);
        }
        let snapshot = self.source.snapshot(project_id, generation).await?;
        let now_ns = store::now_ns();
        let work = tokio::task::spawn_blocking(move || {
            let snapshot: &Snapshot = &snapshot;
            work.into_iter()
                .map(|(monitor, scope, firing, also, behind)| {
                    let verdicts = verdicts(snapshot, &monitor, &scope, &also, now_ns);
                    (monitor, firing, verdicts, behind)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|error| MonitorError::Internal(format!("evaluation task failed: {error}")))?;

        let mut recorded = 0;
        for (monitor, firing, verdicts, behind) in work {
            for (user_id, verdict) in verdicts? {
                let is_firing = firing.contains(&user_id);
                if verdict.holds == is_firing {
                    continue;
                }
                let kind = if verdict.holds {
                    EVENT_ALERT
                } else {
                    EVENT_RESOLVE
                };
                let body = |episode: i64, key: &str| {
                    event_body(&monitor, &user_id, kind, &verdict, now_ns, episode, key)
                };
                let changed = store::transition(
                    &self.db,
                    NewEvent {
                        monitor: &monitor,
                        user_id: &user_id,
                        kind,
                        body: &body,
                        generation,
                    },
                )
                .await?;
                if changed {
                    recorded += 1;
                    tracing::info!(
                        monitor_id = monitor.id,
                        project_id,
                        kind,
                        "monitor event recorded"
                    );
                }
            }
            if behind {
                store::set_evaluated_generation(&self.db, &monitor, generation).await?;
            }
        }
        Ok(recorded)
    }
}
