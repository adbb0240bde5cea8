//! The `UsersQueryService` gRPC implementation: check arguments, then answer from the result
//! cache or from the project's snapshot at the current data generation. Calls are
//! authenticated before their message is read, by `userlens_server::auth::Authenticate`
//! (see `serve`), which puts the caller's project in the request's extensions.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use userlens_proto::query::v1 as pb;
use userlens_proto::query::v1::users_query_service_server::UsersQueryService;
use userlens_query_engine::Snapshot;
use userlens_server::auth::authenticated;
use userlens_storage::DatabaseConnection;

use crate::cache::{CacheKey, ResultCache};
use crate::convert;
use crate::error::QueryServiceError;
use crate::fresh_reads::FreshReads;
use crate::metrics::QueryMetrics;
use crate::snapshots::{CurrentGeneration, SnapshotStore};

pub struct QueryService {
    snapshots: SnapshotStore,
    /// Concurrent queries of one project share reads of its generation that started after
    /// they arrived.
    generations: FreshReads<CurrentGeneration>,
    cache: ResultCache,
    metrics: Arc<QueryMetrics>,
}

impl QueryService {
    pub fn new(db: DatabaseConnection, cache: ResultCache, metrics: Arc<QueryMetrics>) -> Self {
        Self {
            snapshots: SnapshotStore::new(db),
            generations: FreshReads::new(),
            cache,
            metrics,
        }
    }

    /// Cache-aside around `compute`, which runs on a blocking thread against the project's
    /// snapshot at the current generation. `extra_key` adds inputs that are not in the
    /// request (the current date for activity series).
    async fn answer<Req, Resp>(
        &self,
        request: &Request<Req>,
        method: &str,
        extra_key: &str,
        compute: impl FnOnce(&Snapshot) -> Result<Resp, QueryServiceError> + Send + 'static,
    ) -> Result<Response<Resp>, QueryServiceError>
    where
        Req: Message,
        Resp: Message + Default + Send + 'static,
    {
        let project_id = authenticated(request)
            .map_err(|_| QueryServiceError::Unauthenticated)?
            .project_id;
        self.metrics.record_query();
        let current = self
            .generations
            .read(project_id, || self.snapshots.current(project_id))
            .await?;
        let generation = current.generation;
        let key = CacheKey::new(
            &current.deployment_id,
            project_id,
            generation,
            method,
            &request.get_ref().encode_to_vec(),
            extra_key,
        );
        if let Some(bytes) = self.cache.get(&key, &self.metrics).await
            && let Ok(cached) = Resp::decode(bytes.as_slice())
        {
            return Ok(Response::new(cached));
        }
        let snapshot = self
            .snapshots
            .at_generation(project_id, generation, &self.metrics)
            .await?;
        let response = tokio::task::spawn_blocking(move || compute(&snapshot))
            .await
            .map_err(|e| QueryServiceError::Internal(format!("query task failed: {e}")))??;
        self.cache
            .set(key, response.encode_to_vec(), &self.metrics)
            .await;
        Ok(Response::new(response))
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[tonic::async_trait]
impl UsersQueryService for QueryService {
    async fn check_key(
        &self,
        request: Request<pb::CheckKeyRequest>,
    ) -> Result<Response<pb::CheckKeyResponse>, Status> {
        // Reaching here means the key is known: `Authenticate` refused the call otherwise.
        authenticated(&request)?;
        Ok(Response::new(pb::CheckKeyResponse {}))
    }

    async fn get_users_overview(
        &self,
        request: Request<pb::GetUsersOverviewRequest>,
    ) -> Result<Response<pb::UsersOverview>, Status> {
        let range = convert::overview_range(request.get_ref())?;
        let answer = self
            .answer(&request, "GetUsersOverview", "", move |snapshot| {
                Ok(convert::overview(snapshot.overview(range)?))
            })
            .await?;
        Ok(answer)
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let users_request = convert::users_request(request.get_ref())?;
        let answer = self
            .answer(&request, "ListUsers", "", move |snapshot| {
                let page = snapshot.users(&users_request)?;
                Ok(convert::users(page, &users_request.trend_buckets))
            })
            .await?;
        Ok(answer)
    }

    async fn get_user_detail(
        &self,
        request: Request<pb::GetUserDetailRequest>,
    ) -> Result<Response<pb::GetUserDetailResponse>, Status> {
        let user_id = request.get_ref().user_id.clone();
        let activity_days = convert::activity_days(request.get_ref())?;
        let now = now_ns();
        // Activity series end today: the date is part of the cache key.
        let today = now.div_euclid(86_400_000_000_000).to_string();
        let answer = self
            .answer(&request, "GetUserDetail", &today, move |snapshot| {
                let detail = snapshot.user_detail(&user_id, &activity_days, now)?;
                Ok(pb::GetUserDetailResponse {
                    user: detail.map(|d| convert::user_detail(d, &activity_days)),
                })
            })
            .await?;
        Ok(answer)
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let sessions_request = convert::sessions_request(request.get_ref())?;
        let answer = self
            .answer(&request, "ListSessions", "", move |snapshot| {
                Ok(convert::sessions(snapshot.sessions(&sessions_request)?))
            })
            .await?;
        Ok(answer)
    }

    async fn get_breakdowns(
        &self,
        request: Request<pb::GetBreakdownsRequest>,
    ) -> Result<Response<pb::Breakdowns>, Status> {
        let user_id = request.get_ref().user_id.clone();
        let range = convert::time_range(request.get_ref().range.as_ref())?;
        let answer = self
            .answer(&request, "GetBreakdowns", "", move |snapshot| {
                Ok(convert::breakdowns(snapshot.breakdowns(&user_id, range)?))
            })
            .await?;
        Ok(answer)
    }
}
