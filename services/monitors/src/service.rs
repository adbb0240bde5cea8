//! `userlens.monitors.v1.MonitorService`: the monitors of the caller's project. Calls are
//! authenticated before their message is read, by `userlens_server::auth::Authenticate`.

use sea_orm::DatabaseConnection;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use userlens_proto::monitors::v1 as pb;
use userlens_proto::monitors::v1::monitor_service_server::MonitorService;
use userlens_server::auth::authenticated;

use crate::entities::monitor_events;
use crate::error::MonitorError;
use crate::model::{Condition, MonitorSpec};
use crate::store::{self, DELIVERY_DELIVERED, DELIVERY_FAILED, DELIVERY_PENDING, EVENT_ALERT};

pub const DEFAULT_EVENTS_PAGE: u32 = 50;
pub const MAX_EVENTS_PAGE: u32 = 200;

pub struct MonitorGrpc {
    db: DatabaseConnection,
}

impl MonitorGrpc {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

impl From<MonitorError> for Status {
    fn from(error: MonitorError) -> Self {
        match &error {
            MonitorError::Invalid { field, message } => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(*field, message.clone());
                Status::with_error_details(Code::InvalidArgument, error.to_string(), details)
            }
            MonitorError::NotFound(_) => Status::not_found(error.to_string()),
            MonitorError::Storage(source) => {
                tracing::error!(error = %source, "monitor call failed on the database");
                Status::unavailable("the database is unavailable, retry later")
            }
            MonitorError::Query(_) | MonitorError::Internal(_) => {
                tracing::error!(%error, "monitor call failed");
                Status::internal("internal error")
            }
        }
    }
}

fn condition_from_proto(value: i32) -> Result<Option<Condition>, MonitorError> {
    match pb::MonitorCondition::try_from(value) {
        Ok(pb::MonitorCondition::Unspecified) => Ok(None),
        Ok(pb::MonitorCondition::CostAbove) => Ok(Some(Condition::CostAbove)),
        Ok(pb::MonitorCondition::ErrorRateAbove) => Ok(Some(Condition::ErrorRateAbove)),
        Ok(pb::MonitorCondition::TracesAbove) => Ok(Some(Condition::TracesAbove)),
        Ok(pb::MonitorCondition::Inactive) => Ok(Some(Condition::Inactive)),
        Err(_) => Err(MonitorError::invalid(
            "condition",
            format!("unknown condition {value}"),
        )),
    }
}

fn condition_to_proto(condition: Condition) -> pb::MonitorCondition {
    match condition {
        Condition::CostAbove => pb::MonitorCondition::CostAbove,
        Condition::ErrorRateAbove => pb::MonitorCondition::ErrorRateAbove,
        Condition::TracesAbove => pb::MonitorCondition::TracesAbove,
        Condition::Inactive => pb::MonitorCondition::Inactive,
    }
}

fn timestamp(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

fn monitor_to_proto(monitor: &store::Monitor, firing_users: i64) -> pb::Monitor {
    let spec = &monitor.spec;
    pb::Monitor {
        id: monitor.id,
        name: spec.name.clone(),
        user_id: spec.user_id.clone(),
        condition: condition_to_proto(spec.condition).into(),
        threshold: spec.threshold,
        min_sessions: spec.min_sessions,
        window_seconds: spec.window_seconds,
        webhook_url: spec.webhook_url.clone(),
        enabled: spec.enabled,
        created_at: Some(timestamp(monitor.created_at_ns)),
        updated_at: Some(timestamp(monitor.updated_at_ns)),
        firing_users,
    }
}

fn event_to_proto(event: monitor_events::Model) -> pb::MonitorEvent {
    let kind = if event.kind == EVENT_ALERT {
        pb::MonitorEventKind::Alert
    } else {
        pb::MonitorEventKind::Resolve
    };
    let delivery = match event.delivery.as_str() {
        DELIVERY_PENDING => pb::DeliveryState::Pending,
        DELIVERY_DELIVERED => pb::DeliveryState::Delivered,
        DELIVERY_FAILED => pb::DeliveryState::Failed,
        _ => pb::DeliveryState::Unspecified,
    };
    let pending = delivery == pb::DeliveryState::Pending;
    pb::MonitorEvent {
        id: event.id,
        monitor_id: event.monitor_id,
        user_id: event.user_id,
        kind: kind.into(),
        episode: event.episode,
        idempotency_key: event.idempotency_key,
        body: event.body,
        created_at: Some(timestamp(event.created_at_ns)),
        delivery: delivery.into(),
        attempts: event.attempts,
        last_status: event.last_status,
        last_error: event.last_error,
        delivered_at: event.delivered_at_ns.map(timestamp),
        next_attempt_at: pending.then(|| timestamp(event.next_attempt_ns)),
    }
}

fn project_of<T>(request: &Request<T>) -> Result<i64, Status> {
    Ok(authenticated(request)?.project_id)
}

impl MonitorGrpc {
    async fn with_firing(&self, monitor: store::Monitor) -> Result<pb::Monitor, MonitorError> {
        let counts = store::firing_counts(&self.db, &[monitor.id]).await?;
        Ok(monitor_to_proto(
            &monitor,
            counts.get(&monitor.id).copied().unwrap_or(0),
        ))
    }
}

#[tonic::async_trait]
impl MonitorService for MonitorGrpc {
    async fn create_monitor(
        &self,
        request: Request<pb::CreateMonitorRequest>,
    ) -> Result<Response<pb::CreateMonitorResponse>, Status> {
        let project_id = project_of(&request)?;
        let message = request.into_inner();
        let condition = condition_from_proto(message.condition)?
            .ok_or_else(|| MonitorError::invalid("condition", "is required"))?;
        let spec = MonitorSpec {
            name: message.name,
            user_id: message.user_id,
            condition,
            threshold: message.threshold,
            min_sessions: message.min_sessions.unwrap_or(1),
            window_seconds: message.window_seconds,
            webhook_url: message.webhook_url,
            enabled: message.enabled.unwrap_or(true),
        };
        let monitor = store::create(&self.db, project_id, spec).await?;
        Ok(Response::new(pb::CreateMonitorResponse {
            secret: monitor.secret.clone(),
            monitor: Some(monitor_to_proto(&monitor, 0)),
        }))
    }

    async fn update_monitor(
        &self,
        request: Request<pb::UpdateMonitorRequest>,
    ) -> Result<Response<pb::Monitor>, Status> {
        let project_id = project_of(&request)?;
        let message = request.into_inner();
        let condition = condition_from_proto(message.condition)?;
        if message.clear_user_id && message.user_id.is_some() {
            return Err(
                MonitorError::invalid("user_id", "set user_id or clear_user_id, not both").into(),
            );
        }
        let monitor = store::update(&self.db, project_id, message.id, |mut spec| {
            if let Some(name) = message.name {
                spec.name = name;
            }
            if message.clear_user_id {
                spec.user_id = None;
            } else if let Some(user_id) = message.user_id {
                spec.user_id = Some(user_id);
            }
            if let Some(condition) = condition {
                spec.condition = condition;
            }
            if let Some(threshold) = message.threshold {
                spec.threshold = threshold;
            }
            if let Some(min_sessions) = message.min_sessions {
                spec.min_sessions = min_sessions;
            }
            if let Some(window_seconds) = message.window_seconds {
                spec.window_seconds = window_seconds;
            }
            if let Some(webhook_url) = message.webhook_url {
                spec.webhook_url = webhook_url;
            }
            if let Some(enabled) = message.enabled {
                spec.enabled = enabled;
            }
            spec
        })
        .await?;
        Ok(Response::new(self.with_firing(monitor).await?))
    }

    async fn delete_monitor(
        &self,
        request: Request<pb::DeleteMonitorRequest>,
    ) -> Result<Response<pb::DeleteMonitorResponse>, Status> {
        let project_id = project_of(&request)?;
        store::delete(&self.db, project_id, request.get_ref().id).await?;
        Ok(Response::new(pb::DeleteMonitorResponse {}))
    }

    async fn list_monitors(
        &self,
        request: Request<pb::ListMonitorsRequest>,
    ) -> Result<Response<pb::ListMonitorsResponse>, Status> {
        let project_id = project_of(&request)?;
        let monitors = store::list(&self.db, project_id).await?;
        let ids: Vec<i64> = monitors.iter().map(|m| m.id).collect();
        let counts = store::firing_counts(&self.db, &ids).await?;
        Ok(Response::new(pb::ListMonitorsResponse {
            monitors: monitors
                .iter()
                .map(|m| monitor_to_proto(m, counts.get(&m.id).copied().unwrap_or(0)))
                .collect(),
        }))
    }

    async fn list_monitor_events(
        &self,
        request: Request<pb::ListMonitorEventsRequest>,
    ) -> Result<Response<pb::ListMonitorEventsResponse>, Status> {
        let project_id = project_of(&request)?;
        let message = request.into_inner();
        let first = message.first.unwrap_or(DEFAULT_EVENTS_PAGE);
        if !(1..=MAX_EVENTS_PAGE).contains(&first) {
            return Err(MonitorError::invalid(
                "first",
                format!("must be between 1 and {MAX_EVENTS_PAGE}, got {first}"),
            )
            .into());
        }
        if let Some(monitor_id) = message.monitor_id {
            store::get(&self.db, project_id, monitor_id).await?;
        }
        let (events, has_next_page) = store::events(
            &self.db,
            project_id,
            message.monitor_id,
            u64::from(first),
            message.before_id,
        )
        .await?;
        Ok(Response::new(pb::ListMonitorEventsResponse {
            events: events.into_iter().map(event_to_proto).collect(),
            has_next_page,
        }))
    }
}
