//! Monitors in GraphQL (docs/spec.md §8): `monitors` and `monitorEvents` on `Query`,
//! `createMonitor`, `updateMonitor` and `deleteMonitor` on `Mutation`, each one call to
//! users-query's `MonitorService` with the caller's key.

use std::future::Future;
use std::time::Duration;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use tonic::transport::Channel;
use userlens_proto::monitors::v1 as pb;
use userlens_proto::monitors::v1::monitor_service_client::MonitorServiceClient;

use crate::client::{Credentials, QueryClient};
use crate::error::GatewayError;
use crate::model::RPC_COMPLEXITY;
use crate::scalars::DateTime;

const MAX_EVENTS_PAGE: i32 = 200;

/// The `MonitorService` client, on users-query's channel.
#[derive(Clone)]
pub(crate) struct MonitorsClient {
    channel: Channel,
    request_timeout: Duration,
}

impl MonitorsClient {
    pub(crate) fn new(query: &QueryClient) -> Self {
        let (channel, request_timeout) = query.channel_and_timeout();
        Self {
            channel,
            request_timeout,
        }
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        rpc: &'static str,
        credentials: &Credentials,
        message: Req,
        send: F,
    ) -> Result<Resp, GatewayError>
    where
        F: FnOnce(MonitorServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.request_timeout);
        request
            .metadata_mut()
            .insert("authorization", credentials.0.clone());
        let client = MonitorServiceClient::new(self.channel.clone());
        let outcome = tokio::time::timeout(self.request_timeout, send(client, request))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("users-query deadline")));
        outcome
            .map(tonic::Response::into_inner)
            .map_err(|status| GatewayError::from_status(rpc, status))
    }
}

fn deps<'a>(ctx: &Context<'a>) -> Result<(&'a MonitorsClient, &'a Credentials), GatewayError> {
    let client = ctx
        .data::<MonitorsClient>()
        .map_err(|_| GatewayError::Internal("schema built without a monitors client".into()))?;
    let credentials = ctx
        .data::<Credentials>()
        .map_err(|_| GatewayError::Unauthenticated)?;
    Ok((client, credentials))
}

fn parse_id(field: &str, id: &ID) -> Result<i64, GatewayError> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| GatewayError::bad_input(field, format!("`{field}` is not a monitor id")))
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MonitorCondition {
    /// Cost sum in the window above `threshold` USD.
    CostAbove,
    /// At least `minSessions` sessions in the window and errored sessions / sessions above
    /// `threshold` (0–1).
    ErrorRateAbove,
    /// Traces in the window above `threshold`.
    TracesAbove,
    /// No trace for `windowSeconds`.
    Inactive,
}

impl MonitorCondition {
    fn to_proto(self) -> pb::MonitorCondition {
        match self {
            MonitorCondition::CostAbove => pb::MonitorCondition::CostAbove,
            MonitorCondition::ErrorRateAbove => pb::MonitorCondition::ErrorRateAbove,
            MonitorCondition::TracesAbove => pb::MonitorCondition::TracesAbove,
            MonitorCondition::Inactive => pb::MonitorCondition::Inactive,
        }
    }

    fn from_proto(condition: pb::MonitorCondition) -> Result<Self, GatewayError> {
        match condition {
            pb::MonitorCondition::CostAbove => Ok(MonitorCondition::CostAbove),
            pb::MonitorCondition::ErrorRateAbove => Ok(MonitorCondition::ErrorRateAbove),
            pb::MonitorCondition::TracesAbove => Ok(MonitorCondition::TracesAbove),
            pb::MonitorCondition::Inactive => Ok(MonitorCondition::Inactive),
            pb::MonitorCondition::Unspecified => Err(GatewayError::Internal(
                "users-query sent a monitor without a condition".into(),
            )),
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MonitorEventKind {
    Alert,
    Resolve,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

/// A monitor of the caller's project.
#[derive(SimpleObject)]
pub(crate) struct Monitor {
    id: ID,
    name: String,
    /// The one user watched; null watches every user of the project.
    user_id: Option<String>,
    condition: MonitorCondition,
    threshold: f64,
    min_sessions: i32,
    window_seconds: i64,
    webhook_url: String,
    enabled: bool,
    created_at: Option<DateTime>,
    updated_at: Option<DateTime>,
    /// Users the condition holds for now (an open episode each).
    firing_users: i64,
}

impl Monitor {
    fn from_proto(monitor: pb::Monitor) -> Result<Self, GatewayError> {
        Ok(Monitor {
            id: ID(monitor.id.to_string()),
            condition: MonitorCondition::from_proto(monitor.condition())?,
            name: monitor.name,
            user_id: monitor.user_id,
            threshold: monitor.threshold,
            min_sessions: i32::try_from(monitor.min_sessions).unwrap_or(i32::MAX),
            window_seconds: monitor.window_seconds,
            webhook_url: monitor.webhook_url,
            enabled: monitor.enabled,
            created_at: monitor
                .created_at
                .as_ref()
                .and_then(DateTime::from_timestamp),
            updated_at: monitor
                .updated_at
                .as_ref()
                .and_then(DateTime::from_timestamp),
            firing_users: monitor.firing_users,
        })
    }
}

#[derive(SimpleObject)]
pub(crate) struct CreateMonitorPayload {
    monitor: Monitor,
    /// The HMAC-SHA256 key of `X-Userlens-Signature`; shown only here.
    secret: String,
}

/// One alert or resolve, with its webhook delivery state.
#[derive(SimpleObject)]
pub(crate) struct MonitorEvent {
    id: ID,
    monitor_id: ID,
    user_id: String,
    kind: MonitorEventKind,
    episode: i64,
    idempotency_key: String,
    /// The JSON body POSTed (and signed).
    body: String,
    created_at: Option<DateTime>,
    delivery: DeliveryState,
    attempts: i32,
    last_status: Option<i32>,
    last_error: Option<String>,
    delivered_at: Option<DateTime>,
    next_attempt_at: Option<DateTime>,
}

impl MonitorEvent {
    fn from_proto(event: pb::MonitorEvent) -> Self {
        MonitorEvent {
            id: ID(event.id.to_string()),
            monitor_id: ID(event.monitor_id.to_string()),
            kind: match event.kind() {
                pb::MonitorEventKind::Resolve => MonitorEventKind::Resolve,
                _ => MonitorEventKind::Alert,
            },
            delivery: match event.delivery() {
                pb::DeliveryState::Delivered => DeliveryState::Delivered,
                pb::DeliveryState::Failed => DeliveryState::Failed,
                _ => DeliveryState::Pending,
            },
            user_id: event.user_id,
            episode: event.episode,
            idempotency_key: event.idempotency_key,
            body: event.body,
            created_at: event.created_at.as_ref().and_then(DateTime::from_timestamp),
            attempts: event.attempts,
            last_status: event.last_status,
            last_error: event.last_error,
            delivered_at: event
                .delivered_at
                .as_ref()
                .and_then(DateTime::from_timestamp),
            next_attempt_at: event
                .next_attempt_at
                .as_ref()
                .and_then(DateTime::from_timestamp),
        }
    }
}

#[derive(SimpleObject)]
pub(crate) struct MonitorEventConnection {
    /// Newest first.
    nodes: Vec<MonitorEvent>,
    has_next_page: bool,
    /// Pass as `before` for the next page.
    end_cursor: Option<ID>,
}

#[derive(InputObject)]
pub(crate) struct CreateMonitorInput {
    name: String,
    /// Watch one user; leave out to watch every user.
    user_id: Option<String>,
    condition: MonitorCondition,
    /// USD for COST_ABOVE, a rate in [0, 1) for ERROR_RATE_ABOVE, a whole count for
    /// TRACES_ABOVE; unused by INACTIVE.
    #[graphql(default = 0.0)]
    threshold: f64,
    /// ERROR_RATE_ABOVE only.
    #[graphql(default = 1)]
    min_sessions: i32,
    /// The rolling window (INACTIVE: how long without a trace), 1 s – 366 days.
    window_seconds: i64,
    /// http or https.
    webhook_url: String,
    #[graphql(default = true)]
    enabled: bool,
}

/// Fields left out keep their value.
#[derive(InputObject)]
pub(crate) struct UpdateMonitorInput {
    name: Option<String>,
    user_id: Option<String>,
    /// true: watch every user (clears `userId`).
    every_user: Option<bool>,
    condition: Option<MonitorCondition>,
    threshold: Option<f64>,
    min_sessions: Option<i32>,
    window_seconds: Option<i64>,
    webhook_url: Option<String>,
    enabled: Option<bool>,
}

#[derive(Default)]
pub(crate) struct MonitorQuery;

#[Object]
impl MonitorQuery {
    /// The project's monitors, oldest first.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn monitors(&self, ctx: &Context<'_>) -> Result<Vec<Monitor>, GatewayError> {
        let (client, credentials) = deps(ctx)?;
        let response = client
            .call(
                "ListMonitors",
                credentials,
                pb::ListMonitorsRequest {},
                |mut c, r| async move { c.list_monitors(r).await },
            )
            .await?;
        response
            .monitors
            .into_iter()
            .map(Monitor::from_proto)
            .collect()
    }

    /// The project's monitor events (the delivery log), newest first.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn monitor_events(
        &self,
        ctx: &Context<'_>,
        monitor_id: Option<ID>,
        #[graphql(default = 50)] first: i32,
        before: Option<ID>,
    ) -> Result<MonitorEventConnection, GatewayError> {
        let (client, credentials) = deps(ctx)?;
        let first = u32::try_from(first)
            .ok()
            .filter(|n| (1..=MAX_EVENTS_PAGE.unsigned_abs()).contains(n))
            .ok_or_else(|| {
                GatewayError::bad_input(
                    "first",
                    format!("`first` must be between 1 and {MAX_EVENTS_PAGE}, got {first}"),
                )
            })?;
        let request = pb::ListMonitorEventsRequest {
            monitor_id: monitor_id
                .as_ref()
                .map(|id| parse_id("monitorId", id))
                .transpose()?,
            first: Some(first),
            before_id: before
                .as_ref()
                .map(|id| parse_id("before", id))
                .transpose()?,
        };
        let response = client
            .call(
                "ListMonitorEvents",
                credentials,
                request,
                |mut c, r| async move { c.list_monitor_events(r).await },
            )
            .await?;
        let end_cursor = response.events.last().map(|e| ID(e.id.to_string()));
        Ok(MonitorEventConnection {
            nodes: response
                .events
                .into_iter()
                .map(MonitorEvent::from_proto)
                .collect(),
            has_next_page: response.has_next_page,
            end_cursor,
        })
    }
}

#[derive(Default)]
pub(crate) struct MonitorMutation;

#[Object]
impl MonitorMutation {
    /// Defines a monitor; the answer holds its webhook secret, shown only once.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn create_monitor(
        &self,
        ctx: &Context<'_>,
        input: CreateMonitorInput,
    ) -> Result<CreateMonitorPayload, GatewayError> {
        let (client, credentials) = deps(ctx)?;
        let request = pb::CreateMonitorRequest {
            name: input.name,
            user_id: input.user_id,
            condition: input.condition.to_proto().into(),
            threshold: input.threshold,
            min_sessions: Some(i64::from(input.min_sessions)),
            window_seconds: input.window_seconds,
            webhook_url: input.webhook_url,
            enabled: Some(input.enabled),
        };
        let response = client
            .call(
                "CreateMonitor",
                credentials,
                request,
                |mut c, r| async move { c.create_monitor(r).await },
            )
            .await?;
        let monitor = response
            .monitor
            .ok_or_else(|| GatewayError::Internal("CreateMonitor answered no monitor".into()))?;
        Ok(CreateMonitorPayload {
            monitor: Monitor::from_proto(monitor)?,
            secret: response.secret,
        })
    }

    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn update_monitor(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateMonitorInput,
    ) -> Result<Monitor, GatewayError> {
        let (client, credentials) = deps(ctx)?;
        let request = pb::UpdateMonitorRequest {
            id: parse_id("id", &id)?,
            name: input.name,
            user_id: input.user_id,
            clear_user_id: input.every_user.unwrap_or(false),
            condition: input
                .condition
                .map_or(
                    pb::MonitorCondition::Unspecified,
                    MonitorCondition::to_proto,
                )
                .into(),
            threshold: input.threshold,
            min_sessions: input.min_sessions.map(i64::from),
            window_seconds: input.window_seconds,
            webhook_url: input.webhook_url,
            enabled: input.enabled,
        };
        let monitor = client
            .call(
                "UpdateMonitor",
                credentials,
                request,
                |mut c, r| async move { c.update_monitor(r).await },
            )
            .await?;
        Monitor::from_proto(monitor)
    }

    /// Deletes the monitor, its state and its events; true when done.
    #[graphql(complexity = "RPC_COMPLEXITY")]
    async fn delete_monitor(&self, ctx: &Context<'_>, id: ID) -> Result<bool, GatewayError> {
        let (client, credentials) = deps(ctx)?;
        let request = pb::DeleteMonitorRequest {
            id: parse_id("id", &id)?,
        };
        client
            .call(
                "DeleteMonitor",
                credentials,
                request,
                |mut c, r| async move { c.delete_monitor(r).await },
            )
            .await?;
        Ok(true)
    }
}
