//! Monitors, their per-user state and their events in the database. Every read and write is
//! scoped by project: a monitor id of another project is not found.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    TransactionTrait,
};

use crate::entities::{monitor_events, monitor_states, monitors};
use crate::error::MonitorError;
use crate::model::{Condition, MAX_MONITORS_PER_PROJECT, MonitorSpec};

pub const DELIVERY_PENDING: &str = "PENDING";
pub const DELIVERY_DELIVERED: &str = "DELIVERED";
pub const DELIVERY_FAILED: &str = "FAILED";
pub const EVENT_ALERT: &str = "ALERT";
pub const EVENT_RESOLVE: &str = "RESOLVE";

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A stored monitor with its definition parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub id: i64,
    pub project_id: i64,
    pub spec: MonitorSpec,
    pub secret: String,
    pub evaluated_generation: i64,
    pub created_at_ns: i64,
    pub updated_at_ns: i64,
}

impl TryFrom<monitors::Model> for Monitor {
    type Error = MonitorError;

    fn try_from(model: monitors::Model) -> Result<Self, Self::Error> {
        let condition = Condition::parse(&model.condition).ok_or_else(|| {
            MonitorError::Internal(format!(
                "monitor {} has an unknown condition {:?}",
                model.id, model.condition
            ))
        })?;
        Ok(Monitor {
            id: model.id,
            project_id: model.project_id,
            spec: MonitorSpec {
                name: model.name,
                user_id: model.user_id,
                condition,
                threshold: model.threshold,
                min_sessions: model.min_sessions,
                window_seconds: model.window_seconds,
                webhook_url: model.webhook_url,
                enabled: model.enabled,
            },
            secret: model.secret,
            evaluated_generation: model.evaluated_generation,
            created_at_ns: model.created_at_ns,
            updated_at_ns: model.updated_at_ns,
        })
    }
}

/// A fresh per-monitor webhook secret: 256 random bits, hex.
fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

pub async fn create(
    db: &DatabaseConnection,
    project_id: i64,
    spec: MonitorSpec,
) -> Result<Monitor, MonitorError> {
    let spec = spec.validated()?;
    let existing = monitors::Entity::find()
        .filter(monitors::Column::ProjectId.eq(project_id))
        .count(db)
        .await?;
    if existing >= MAX_MONITORS_PER_PROJECT {
        return Err(MonitorError::invalid(
            "name",
            format!("a project has at most {MAX_MONITORS_PER_PROJECT} monitors"),
        ));
    }
    let now = now_ns();
    let model = monitors::ActiveModel {
        project_id: Set(project_id),
        name: Set(spec.name.clone()),
        user_id: Set(spec.user_id.clone()),
        condition: Set(spec.condition.as_str().to_owned()),
        threshold: Set(spec.threshold),
        min_sessions: Set(spec.min_sessions),
        window_seconds: Set(spec.window_seconds),
        webhook_url: Set(spec.webhook_url.clone()),
        secret: Set(new_secret()),
        enabled: Set(spec.enabled),
        evaluated_generation: Set(0),
        created_at_ns: Set(now),
        updated_at_ns: Set(now),
        ..Default::default()
    };
    let inserted = monitors::Entity::insert(model)
        .exec_with_returning(db)
        .await?;
    Monitor::try_from(inserted)
}

pub async fn get(
    db: &impl ConnectionTrait,
    project_id: i64,
    id: i64,
) -> Result<Monitor, MonitorError> {
    let model = monitors::Entity::find_by_id(id)
        .filter(monitors::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .ok_or(MonitorError::NotFound(id))?;
    Monitor::try_from(model)
}

/// Replaces the definition; the evaluation restarts from scratch, open episodes stay open.
pub async fn update(
    db: &DatabaseConnection,
    project_id: i64,
    id: i64,
    change: impl FnOnce(MonitorSpec) -> MonitorSpec,
) -> Result<Monitor, MonitorError> {
    let current = get(db, project_id, id).await?;
    let spec = change(current.spec.clone()).validated()?;
    monitors::Entity::update_many()
        .col_expr(monitors::Column::Name, Expr::value(spec.name.clone()))
        .col_expr(monitors::Column::UserId, Expr::value(spec.user_id.clone()))
        .col_expr(
            monitors::Column::Condition,
            Expr::value(spec.condition.as_str()),
        )
        .col_expr(monitors::Column::Threshold, Expr::value(spec.threshold))
        .col_expr(
            monitors::Column::MinSessions,
            Expr::value(spec.min_sessions),
        )
        .col_expr(
            monitors::Column::WindowSeconds,
            Expr::value(spec.window_seconds),
        )
        .col_expr(
            monitors::Column::WebhookUrl,
            Expr::value(spec.webhook_url.clone()),
        )
        .col_expr(monitors::Column::Enabled, Expr::value(spec.enabled))
        .col_expr(monitors::Column::EvaluatedGeneration, Expr::value(0i64))
        .col_expr(monitors::Column::UpdatedAtNs, Expr::value(now_ns()))
        .filter(monitors::Column::Id.eq(id))
        .filter(monitors::Column::ProjectId.eq(project_id))
        .exec(db)
        .await?;
    get(db, project_id, id).await
}

/// Deletes the monitor, its states and its events (pending deliveries included).
pub async fn delete(db: &DatabaseConnection, project_id: i64, id: i64) -> Result<(), MonitorError> {
    let txn = db.begin().await?;
    get(&txn, project_id, id).await?;
    monitor_events::Entity::delete_many()
        .filter(monitor_events::Column::MonitorId.eq(id))
        .exec(&txn)
        .await?;
    monitor_states::Entity::delete_many()
        .filter(monitor_states::Column::MonitorId.eq(id))
        .exec(&txn)
        .await?;
    monitors::Entity::delete_many()
        .filter(monitors::Column::Id.eq(id))
        .filter(monitors::Column::ProjectId.eq(project_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// The project's monitors, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    project_id: i64,
) -> Result<Vec<Monitor>, MonitorError> {
    monitors::Entity::find()
        .filter(monitors::Column::ProjectId.eq(project_id))
        .order_by_asc(monitors::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Monitor::try_from)
        .collect()
}

/// Every enabled monitor of every project, by project.
pub async fn enabled_monitors(db: &impl ConnectionTrait) -> Result<Vec<Monitor>, MonitorError> {
    monitors::Entity::find()
        .filter(monitors::Column::Enabled.eq(true))
        .order_by_asc(monitors::Column::ProjectId)
        .order_by_asc(monitors::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Monitor::try_from)
        .collect()
}

/// Records that the monitor evaluated every user changed up to `generation`, unless its
/// definition changed since it was read (`updated_at_ns`): then it evaluates again.
pub async fn set_evaluated_generation(
    db: &impl ConnectionTrait,
    monitor: &Monitor,
    generation: i64,
) -> Result<(), MonitorError> {
    monitors::Entity::update_many()
        .col_expr(
            monitors::Column::EvaluatedGeneration,
            Expr::value(generation),
        )
        .filter(monitors::Column::Id.eq(monitor.id))
        .filter(monitors::Column::UpdatedAtNs.eq(monitor.updated_at_ns))
        .exec(db)
        .await?;
    Ok(())
}

/// Users whose state is firing now, per monitor of the project.
pub async fn firing_counts(
    db: &impl ConnectionTrait,
    monitor_ids: &[i64],
) -> Result<std::collections::HashMap<i64, i64>, MonitorError> {
    let rows: Vec<(i64, i64)> = monitor_states::Entity::find()
        .select_only()
        .column(monitor_states::Column::MonitorId)
        .column_as(monitor_states::Column::UserId.count(), "firing")
        .filter(monitor_states::Column::MonitorId.is_in(monitor_ids.iter().copied()))
        .filter(monitor_states::Column::Firing.eq(true))
        .group_by(monitor_states::Column::MonitorId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Users of the monitor whose state is firing.
pub async fn firing_users(
    db: &impl ConnectionTrait,
    monitor_id: i64,
) -> Result<Vec<String>, MonitorError> {
    Ok(monitor_states::Entity::find()
        .select_only()
        .column(monitor_states::Column::UserId)
        .filter(monitor_states::Column::MonitorId.eq(monitor_id))
        .filter(monitor_states::Column::Firing.eq(true))
        .into_tuple()
        .all(db)
        .await?)
}

/// An event about to be recorded by a state change.
pub struct NewEvent<'a> {
    pub monitor: &'a Monitor,
    pub user_id: &'a str,
    pub kind: &'static str,
    /// Builds the webhook body for the episode the change opens or closes.
    pub body: &'a (dyn Fn(i64, &str) -> String + Sync),
    /// The project data generation the verdict was computed at.
    pub generation: i64,
}

/// The idempotency key of one event: unique per monitor, user, episode and kind.
pub fn idempotency_key(monitor_id: i64, user_id: &str, episode: i64, kind: &str) -> String {
    use sha2::Digest;
    let user = sha2::Sha256::digest(user_id.as_bytes());
    format!(
        "{monitor_id}-{}-{episode}-{}",
        &hex::encode(user)[..16],
        kind.to_ascii_lowercase()
    )
}

/// Moves the (monitor, user) state to firing (`ALERT`) or resolved (`RESOLVE`) and records
/// the event, in one transaction. Returns false, writing nothing, when the state already
/// was there (another evaluator got there first): an episode fires and resolves once.
pub async fn transition(
    db: &DatabaseConnection,
    event: NewEvent<'_>,
) -> Result<bool, MonitorError> {
    let firing = event.kind == EVENT_ALERT;
    let now = now_ns();
    let txn = db.begin().await?;
    // A verdict from before an erasure of a user (SPEC §9) must not bring the user back into
    // the monitor tables. PostgreSQL: the project row is share-locked first, so an erasure
    // (which deletes monitor records after locking that row) runs wholly before or after
    // this transition. SQLite: checked after the first write took the one write lock.
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    if postgres && erased_after(&txn, event.monitor.project_id, event.generation).await? {
        txn.rollback().await?;
        return Ok(false);
    }
    monitor_states::Entity::insert(monitor_states::ActiveModel {
        monitor_id: Set(event.monitor.id),
        user_id: Set(event.user_id.to_owned()),
        firing: Set(false),
        episode: Set(0),
        changed_at_ns: Set(now),
    })
    .on_conflict_do_nothing_on([
        monitor_states::Column::MonitorId,
        monitor_states::Column::UserId,
    ])
    .exec(&txn)
    .await?;
    if !postgres && erased_after(&txn, event.monitor.project_id, event.generation).await? {
        txn.rollback().await?;
        return Ok(false);
    }
    let mut change = monitor_states::Entity::update_many()
        .col_expr(monitor_states::Column::Firing, Expr::value(firing))
        .col_expr(monitor_states::Column::ChangedAtNs, Expr::value(now))
        .filter(monitor_states::Column::MonitorId.eq(event.monitor.id))
        .filter(monitor_states::Column::UserId.eq(event.user_id))
        .filter(monitor_states::Column::Firing.eq(!firing));
    if firing {
        change = change.col_expr(
            monitor_states::Column::Episode,
            Expr::col(monitor_states::Column::Episode).add(1),
        );
    }
    if change.exec(&txn).await?.rows_affected == 0 {
        txn.rollback().await?;
        return Ok(false);
    }
    let episode: i64 =
        monitor_states::Entity::find_by_id((event.monitor.id, event.user_id.to_owned()))
            .select_only()
            .column(monitor_states::Column::Episode)
            .into_tuple()
            .one(&txn)
            .await?
            .ok_or_else(|| MonitorError::Internal("monitor state vanished".into()))?;
    let key = idempotency_key(event.monitor.id, event.user_id, episode, event.kind);
    let body = (event.body)(episode, &key);
    monitor_events::Entity::insert(monitor_events::ActiveModel {
        project_id: Set(event.monitor.project_id),
        monitor_id: Set(event.monitor.id),
        user_id: Set(event.user_id.to_owned()),
        kind: Set(event.kind.to_owned()),
        episode: Set(episode),
        idempotency_key: Set(key),
        body: Set(body),
        created_at_ns: Set(now),
        delivery: Set(DELIVERY_PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_ns: Set(now),
        last_attempt_ns: Set(None),
        last_status: Set(None),
        last_error: Set(None),
        delivered_at_ns: Set(None),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// Whether a user of the project was erased after `generation` (share-locking the project
/// row on PostgreSQL until the transaction ends).
async fn erased_after(
    txn: &DatabaseTransaction,
    project_id: i64,
    generation: i64,
) -> Result<bool, MonitorError> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT erased_generation FROM projects WHERE id = $1 FOR SHARE",
        _ => "SELECT erased_generation FROM projects WHERE id = ?",
    };
    let erased: i64 = match txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [project_id.into()],
        ))
        .await?
    {
        Some(row) => row.try_get_by_index(0)?,
        None => return Ok(true),
    };
    Ok(erased > generation)
}

/// One page of the project's events, newest first; `true` when more follow.
pub async fn events(
    db: &impl ConnectionTrait,
    project_id: i64,
    monitor_id: Option<i64>,
    first: u64,
    before_id: Option<i64>,
) -> Result<(Vec<monitor_events::Model>, bool), MonitorError> {
    let mut query = monitor_events::Entity::find()
        .filter(monitor_events::Column::ProjectId.eq(project_id))
        .order_by_desc(monitor_events::Column::Id)
        .limit(first + 1);
    if let Some(monitor_id) = monitor_id {
        query = query.filter(monitor_events::Column::MonitorId.eq(monitor_id));
    }
    if let Some(before_id) = before_id {
        query = query.filter(monitor_events::Column::Id.lt(before_id));
    }
    let mut rows = query.all(db).await?;
    let has_next_page = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows, has_next_page))
}

/// A pending event with what its delivery needs.
#[derive(Debug, Clone)]
pub struct DueEvent {
    pub event: monitor_events::Model,
    pub webhook_url: String,
    pub secret: String,
}

/// Up to `limit` pending events due at `now`, oldest due first.
pub async fn due_events(
    db: &impl ConnectionTrait,
    now: i64,
    limit: u64,
) -> Result<Vec<DueEvent>, MonitorError> {
    let events = monitor_events::Entity::find()
        .filter(monitor_events::Column::Delivery.eq(DELIVERY_PENDING))
        .filter(monitor_events::Column::NextAttemptNs.lte(now))
        .order_by_asc(monitor_events::Column::NextAttemptNs)
        .order_by_asc(monitor_events::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let mut due = Vec::with_capacity(events.len());
    let ids: Vec<i64> = events.iter().map(|e| e.monitor_id).collect();
    let monitors: std::collections::HashMap<i64, monitors::Model> = monitors::Entity::find()
        .filter(monitors::Column::Id.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    for event in events {
        if let Some(monitor) = monitors.get(&event.monitor_id) {
            due.push(DueEvent {
                webhook_url: monitor.webhook_url.clone(),
                secret: monitor.secret.clone(),
                event,
            });
        }
    }
    Ok(due)
}

/// Takes the event for one attempt: moves its next attempt `lease_ns` ahead, so another
/// deliverer does not send it meanwhile. False when someone else took it first.
pub async fn claim(
    db: &impl ConnectionTrait,
    event: &monitor_events::Model,
    now: i64,
    lease_ns: i64,
) -> Result<bool, MonitorError> {
    let result = monitor_events::Entity::update_many()
        .col_expr(
            monitor_events::Column::NextAttemptNs,
            Expr::value(now.saturating_add(lease_ns)),
        )
        .filter(monitor_events::Column::Id.eq(event.id))
        .filter(monitor_events::Column::Delivery.eq(DELIVERY_PENDING))
        .filter(monitor_events::Column::NextAttemptNs.eq(event.next_attempt_ns))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// What one delivery attempt came to.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub status: Option<i32>,
    pub error: Option<String>,
    pub delivered: bool,
    /// When not delivered: the next attempt's time, or `None` when attempts are exhausted.
    pub retry_at_ns: Option<i64>,
}

pub async fn record_attempt(
    db: &impl ConnectionTrait,
    event_id: i64,
    now: i64,
    outcome: &AttemptOutcome,
) -> Result<(), MonitorError> {
    let delivery = if outcome.delivered {
        DELIVERY_DELIVERED
    } else if outcome.retry_at_ns.is_some() {
        DELIVERY_PENDING
    } else {
        DELIVERY_FAILED
    };
    let mut update = monitor_events::Entity::update_many()
        .col_expr(monitor_events::Column::Delivery, Expr::value(delivery))
        .col_expr(
            monitor_events::Column::Attempts,
            Expr::col(monitor_events::Column::Attempts).add(1),
        )
        .col_expr(monitor_events::Column::LastAttemptNs, Expr::value(now))
        .col_expr(
            monitor_events::Column::LastStatus,
            Expr::value(outcome.status),
        )
        .col_expr(
            monitor_events::Column::LastError,
            Expr::value(outcome.error.clone()),
        )
        .filter(monitor_events::Column::Id.eq(event_id));
    if outcome.delivered {
        update = update.col_expr(monitor_events::Column::DeliveredAtNs, Expr::value(now));
    }
    if let Some(retry_at) = outcome.retry_at_ns {
        update = update.col_expr(monitor_events::Column::NextAttemptNs, Expr::value(retry_at));
    }
    update.exec(db).await?;
    Ok(())
}

/// Distinct users of the project's traces written after generation `since`.
pub async fn users_changed_since(
    db: &impl ConnectionTrait,
    project_id: i64,
    since: i64,
) -> Result<Vec<String>, MonitorError> {
    use userlens_storage::entities::traces;
    Ok(traces::Entity::find()
        .select_only()
        .column(traces::Column::UserId)
        .distinct()
        .filter(traces::Column::ProjectId.eq(project_id))
        .filter(traces::Column::ChangeGeneration.gt(since))
        .filter(traces::Column::UserId.is_not_null())
        .into_tuple::<String>()
        .all(db)
        .await?)
}
