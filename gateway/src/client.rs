//! The users-query gRPC client: one lazily connected, pooled channel for every request.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::codec::CompressionEncoding;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use userlens_proto::query::v1 as pb;
use userlens_proto::query::v1::users_query_service_client::UsersQueryServiceClient;

use crate::error::GatewayError;
use crate::metrics::{Metrics, Rpc};

/// A users-query that does not accept a connection within this is reported unavailable
/// rather than left to the request deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// `/healthz` answers within a container health check's usual 3 s timeout.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_SERVICE_NAME: &str = "userlens.query.v1.UsersQueryService";

/// How long users-query's answer that a key is known decides that a request's body is read.
/// The data calls are authenticated by users-query again, so this does not extend the life
/// of a deleted key; it only saves a call per request.
const KNOWN_KEY_TTL: Duration = Duration::from_secs(30);
/// How long a key users-query refused is refused from the headers alone: a flood of
/// requests with a bad key costs one users-query call per key per 5 s.
const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(5);
const KNOWN_KEYS_CAPACITY: u64 = 10_000;
const UNKNOWN_KEYS_CAPACITY: u64 = 50_000;

/// What the gateway learnt about a key before reading a request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    Known,
    Unknown,
    /// users-query did not answer: the request goes on, and its data calls report why.
    NotChecked,
}

/// users-query's recent answers to `CheckKey`, keyed by the SHA-256 of the `Authorization`
/// value (no plaintext key is kept). Known and unknown keys are cached apart, so a flood of
/// distinct bad keys cannot evict good ones.
#[derive(Clone)]
pub(crate) struct KeyChecks {
    known: moka::future::Cache<[u8; 32], ()>,
    unknown: moka::future::Cache<[u8; 32], ()>,
}

impl KeyChecks {
    pub(crate) fn new() -> Self {
        Self {
            known: moka::future::Cache::builder()
                .max_capacity(KNOWN_KEYS_CAPACITY)
                .time_to_live(KNOWN_KEY_TTL)
                .build(),
            unknown: moka::future::Cache::builder()
                .max_capacity(UNKNOWN_KEYS_CAPACITY)
                .time_to_live(UNKNOWN_KEY_TTL)
                .build(),
        }
    }

    /// Whether `credentials` names a key users-query knows, from the cache or one call.
    pub(crate) async fn check(&self, client: &QueryClient, credentials: &Credentials) -> KeyCheck {
        use sha2::Digest;
        let hash: [u8; 32] = sha2::Sha256::digest(credentials.0.as_bytes()).into();
        if self.known.contains_key(&hash) {
            return KeyCheck::Known;
        }
        if self.unknown.contains_key(&hash) {
            return KeyCheck::Unknown;
        }
        match client.check_key(credentials).await {
            Ok(()) => {
                self.known.insert(hash, ()).await;
                KeyCheck::Known
            }
            Err(GatewayError::Unauthenticated) => {
                self.unknown.insert(hash, ()).await;
                KeyCheck::Unknown
            }
            Err(error) => {
                tracing::debug!(%error, "key check failed; the request goes on");
                KeyCheck::NotChecked
            }
        }
    }
}

/// The caller's `Authorization` header value, forwarded as `authorization` metadata.
#[derive(Clone)]
pub(crate) struct Credentials(pub(crate) AsciiMetadataValue);

#[derive(Clone)]
pub(crate) struct QueryClient {
    channel: Channel,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl QueryClient {
    /// Must run inside a tokio runtime: the channel spawns its connection worker.
    pub(crate) fn new(
        query_url: &str,
        request_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<QueryClient, GatewayError> {
        let endpoint = Endpoint::from_shared(query_url.to_owned())
            .map_err(|source| GatewayError::InvalidQueryUrl {
                url: query_url.to_owned(),
                source,
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(QueryClient {
            channel: endpoint.connect_lazy(),
            request_timeout,
            metrics,
        })
    }

    /// The channel to users-query and the per-call deadline, for the other services there.
    pub(crate) fn channel_and_timeout(&self) -> (Channel, Duration) {
        (self.channel.clone(), self.request_timeout)
    }

    fn service(&self) -> UsersQueryServiceClient<Channel> {
        UsersQueryServiceClient::new(self.channel.clone())
            .accept_compressed(CompressionEncoding::Gzip)
    }

    /// One users-query call with the caller's key and the per-call deadline.
    async fn call<Req, Resp, F, Fut>(
        &self,
        rpc: Rpc,
        credentials: &Credentials,
        message: Req,
        send: F,
    ) -> Result<Resp, GatewayError>
    where
        F: FnOnce(UsersQueryServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.request_timeout);
        request
            .metadata_mut()
            .insert("authorization", credentials.0.clone());
        let started = Instant::now();
        // The channel enforces the deadline too; this bounds anything it might not cover.
        let outcome = tokio::time::timeout(self.request_timeout, send(self.service(), request))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("users-query deadline")));
        let elapsed = started.elapsed();
        self.metrics.record_call(rpc, elapsed, outcome.is_ok());
        match outcome {
            Ok(response) => {
                tracing::debug!(
                    rpc = rpc.name(),
                    elapsed_ms = elapsed.as_millis(),
                    "users-query call"
                );
                Ok(response.into_inner())
            }
            Err(status) => {
                tracing::debug!(
                    rpc = rpc.name(),
                    code = ?status.code(),
                    elapsed_ms = elapsed.as_millis(),
                    "users-query call failed"
                );
                Err(GatewayError::from_status(rpc.name(), status))
            }
        }
    }

    pub(crate) async fn users_overview(
        &self,
        credentials: &Credentials,
        request: pb::GetUsersOverviewRequest,
    ) -> Result<pb::UsersOverview, GatewayError> {
        self.call(
            Rpc::GetUsersOverview,
            credentials,
            request,
            |mut c, r| async move { c.get_users_overview(r).await },
        )
        .await
    }

    pub(crate) async fn list_users(
        &self,
        credentials: &Credentials,
        request: pb::ListUsersRequest,
    ) -> Result<pb::ListUsersResponse, GatewayError> {
        self.call(
            Rpc::ListUsers,
            credentials,
            request,
            |mut c, r| async move { c.list_users(r).await },
        )
        .await
    }

    pub(crate) async fn user_detail(
        &self,
        credentials: &Credentials,
        request: pb::GetUserDetailRequest,
    ) -> Result<pb::GetUserDetailResponse, GatewayError> {
        self.call(
            Rpc::GetUserDetail,
            credentials,
            request,
            |mut c, r| async move { c.get_user_detail(r).await },
        )
        .await
    }

    pub(crate) async fn list_sessions(
        &self,
        credentials: &Credentials,
        request: pb::ListSessionsRequest,
    ) -> Result<pb::ListSessionsResponse, GatewayError> {
        self.call(
            Rpc::ListSessions,
            credentials,
            request,
            |mut c, r| async move { c.list_sessions(r).await },
        )
        .await
    }

    /// OK when users-query knows the caller's key; `Unauthenticated` when it does not.
    pub(crate) async fn check_key(&self, credentials: &Credentials) -> Result<(), GatewayError> {
        self.call(
            Rpc::CheckKey,
            credentials,
            pb::CheckKeyRequest {},
            |mut c, r| async move { c.check_key(r).await },
        )
        .await
        .map(|_| ())
    }

    pub(crate) async fn breakdowns(
        &self,
        credentials: &Credentials,
        request: pb::GetBreakdownsRequest,
    ) -> Result<pb::Breakdowns, GatewayError> {
        self.call(
            Rpc::GetBreakdowns,
            credentials,
            request,
            |mut c, r| async move { c.get_breakdowns(r).await },
        )
        .await
    }

    pub(crate) async fn previous_period_overview(
        &self,
        credentials: &Credentials,
        request: pb::GetUsersOverviewRequest,
    ) -> Result<pb::PeriodOverview, GatewayError> {
        self.call(
            Rpc::GetPreviousPeriodOverview,
            credentials,
            request,
            |mut c, r| async move { c.get_previous_period_overview(r).await },
        )
        .await
    }

    pub(crate) async fn retention(
        &self,
        credentials: &Credentials,
        request: pb::GetRetentionRequest,
    ) -> Result<pb::Retention, GatewayError> {
        self.call(
            Rpc::GetRetention,
            credentials,
            request,
            |mut c, r| async move { c.get_retention(r).await },
        )
        .await
    }

    pub(crate) async fn active_users(
        &self,
        credentials: &Credentials,
        request: pb::GetActiveUsersRequest,
    ) -> Result<pb::ActiveUsers, GatewayError> {
        self.call(
            Rpc::GetActiveUsers,
            credentials,
            request,
            |mut c, r| async move { c.get_active_users(r).await },
        )
        .await
    }

    /// The project's data generation: changes whenever data of the caller's project is
    /// committed.
    pub(crate) async fn data_generation(
        &self,
        credentials: &Credentials,
    ) -> Result<i64, GatewayError> {
        self.call(
            Rpc::GetDataGeneration,
            credentials,
            pb::GetDataGenerationRequest {},
            |mut c, r| async move { c.get_data_generation(r).await },
        )
        .await
        .map(|answer| answer.generation)
    }

    /// Starts an export: the answer (or the refusal of its arguments) arrives within the
    /// per-call deadline; the rows then stream for as long as the reader takes them.
    pub(crate) async fn export_users(
        &self,
        credentials: &Credentials,
        request: pb::ListUsersRequest,
    ) -> Result<tonic::Streaming<pb::ExportUsersChunk>, GatewayError> {
        let mut message = tonic::Request::new(request);
        message
            .metadata_mut()
            .insert("authorization", credentials.0.clone());
        let started = Instant::now();
        let mut service = self.service();
        let outcome = tokio::time::timeout(self.request_timeout, service.export_users(message))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("users-query deadline")));
        self.metrics
            .record_call(Rpc::ExportUsers, started.elapsed(), outcome.is_ok());
        outcome
            .map(tonic::Response::into_inner)
            .map_err(|status| GatewayError::from_status(Rpc::ExportUsers.name(), status))
    }

    /// Whether users-query's grpc.health service reports it serving.
    pub(crate) async fn is_serving(&self) -> bool {
        let mut health = HealthClient::new(self.channel.clone());
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: QUERY_SERVICE_NAME.to_owned(),
        });
        let deadline = HEALTH_TIMEOUT.min(self.request_timeout);
        request.set_timeout(deadline);
        let started = Instant::now();
        let outcome = tokio::time::timeout(deadline, health.check(request)).await;
        let serving = matches!(
            &outcome,
            Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving
        );
        self.metrics
            .record_call(Rpc::HealthCheck, started.elapsed(), serving);
        if !serving {
            let reason = match outcome {
                Ok(Ok(response)) => format!("{:?}", response.get_ref().status()),
                Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
                Err(_) => "deadline exceeded".to_owned(),
            };
            tracing::warn!(%reason, "users-query health check failed");
        }
        serving
    }
}
