//! The `UsersQueryService` gRPC implementation: check arguments, then answer from the result
//! cache or from the project's snapshot at the current data generation. Calls are
//! authenticated before their message is read, by `userlens_server::auth::Authenticate`
//! (see `serve`), which puts the caller's project in the request's extensions.

use std::sync::Arc;

use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
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
    snapshots: Arc<SnapshotStore>,
    /// Concurrent queries of one project share reads of its generation that started after
    /// they arrived.
    generations: FreshReads<CurrentGeneration>,
    cache: ResultCache,
    metrics: Arc<QueryMetrics>,
}

impl QueryService {
    pub fn new(db: DatabaseConnection, cache: ResultCache, metrics: Arc<QueryMetrics>) -> Self {
        Self::with_snapshots(Arc::new(SnapshotStore::new(db)), cache, metrics)
    }

    /// A service answering from `snapshots`, which other readers (the monitors) may share.
    pub fn with_snapshots(
        snapshots: Arc<SnapshotStore>,
        cache: ResultCache,
        metrics: Arc<QueryMetrics>,
    ) -> Self {
        Self {
            snapshots,
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
        let key = CacheKey::new(
            &current,
            project_id,
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
            .at_generation(project_id, &current, &self.metrics)
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

impl QueryService {
    /// Deletes the project's cached answers after an erasure. They are unreachable already
    /// (their keys name older generations); deleting them keeps the erased user's figures
    /// out of the cache's memory too instead of waiting for their expiry.
    async fn purge_cached_answers(&self, project_id: i64) {
        match self.snapshots.current(project_id).await {
            Ok(current) => {
                self.cache
                    .purge_project(&current.deployment_id, project_id, &self.metrics)
                    .await;
            }
            Err(error) => {
                tracing::warn!(%error, project_id, "cached answers not purged after an erasure");
            }
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Rows per chunk of an export stream, and chunks buffered ahead of a slow reader: what
/// an export holds beyond the selection itself.
const EXPORT_CHUNK_ROWS: usize = 500;
const EXPORT_CHUNKS_AHEAD: usize = 2;

fn today(now_ns: i64) -> String {
    now_ns.div_euclid(86_400_000_000_000).to_string()
}

#[tonic::async_trait]
impl UsersQueryService for QueryService {
    type ExportUsersStream = ReceiverStream<Result<pb::ExportUsersChunk, Status>>;

    async fn get_previous_period_overview(
        &self,
        request: Request<pb::GetUsersOverviewRequest>,
    ) -> Result<Response<pb::PeriodOverview>, Status> {
        let range = convert::overview_range(request.get_ref())?;
        let answer = self
            .answer(&request, "GetPreviousPeriodOverview", "", move |snapshot| {
                Ok(convert::period_overview(
                    snapshot.previous_period_overview(range)?,
                ))
            })
            .await?;
        Ok(answer)
    }

    async fn get_retention(
        &self,
        request: Request<pb::GetRetentionRequest>,
    ) -> Result<Response<pb::Retention>, Status> {
        let now = now_ns();
        let retention_request = convert::retention_request(request.get_ref(), now)?;
        // Periods start at 00:00 UTC, so which have started changes only with the date.
        let answer = self
            .answer(&request, "GetRetention", &today(now), move |snapshot| {
                Ok(convert::retention(snapshot.retention(&retention_request)?))
            })
            .await?;
        Ok(answer)
    }

    async fn get_active_users(
        &self,
        request: Request<pb::GetActiveUsersRequest>,
    ) -> Result<Response<pb::ActiveUsers>, Status> {
        let (range, window) = convert::active_users_request(request.get_ref())?;
        let answer = self
            .answer(&request, "GetActiveUsers", "", move |snapshot| {
                Ok(convert::active_users(snapshot.active_users(range, window)?))
            })
            .await?;
        Ok(answer)
    }

    /// Selects and orders the users once, then sends their rows a chunk at a time through a
    /// small bounded channel: memory beyond the selection does not grow with the number of
    /// rows, and a reader that goes away stops the work. Not cached: the rows stream as they
    /// are made. Rows carry no trends (they would need the snapshot at the selection's
    /// generation).
    async fn export_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<Self::ExportUsersStream>, Status> {
        let project_id = authenticated(&request)
            .map_err(|_| QueryServiceError::Unauthenticated)?
            .project_id;
        let export_request = convert::export_request(request.get_ref())?;
        self.metrics.record_query();
        let current = self
            .snapshots
            .current(project_id)
            .await
            .map_err(QueryServiceError::from)?;
        let shared = self
            .snapshots
            .shared_at_generation(project_id, &current, &self.metrics)
            .await
            .map_err(QueryServiceError::from)?;
        let snapshot = Arc::clone(&shared).read_owned().await;
        let export = tokio::task::spawn_blocking(move || snapshot.users_export(&export_request))
            .await
            .map_err(|e| QueryServiceError::Internal(format!("export task failed: {e}")))?
            .map_err(QueryServiceError::from)?;
        let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel(EXPORT_CHUNKS_AHEAD);
        tokio::spawn(async move {
            let mut start = 0;
            while start < export.len() {
                // The selection was made once; a chunk only names its users, so the lock is
                // held for one chunk at a time and refreshes go on between chunks.
                let users = {
                    let snapshot = Arc::clone(&shared).read_owned().await;
                    snapshot
                        .export_rows(&export, start, EXPORT_CHUNK_ROWS)
                        .into_iter()
                        .map(|row| convert::user_row(row, &[]))
                        .collect()
                };
                if chunks_tx
                    .send(Ok(pb::ExportUsersChunk { users }))
                    .await
                    .is_err()
                {
                    return;
                }
                start += EXPORT_CHUNK_ROWS;
            }
        });
        Ok(Response::new(ReceiverStream::new(chunks_rx)))
    }

    async fn check_key(
        &self,
        request: Request<pb::CheckKeyRequest>,
    ) -> Result<Response<pb::CheckKeyResponse>, Status> {
        // Reaching here means the key is known: `Authenticate` refused the call otherwise.
        authenticated(&request)?;
        Ok(Response::new(pb::CheckKeyResponse {}))
    }

    async fn get_data_generation(
        &self,
        request: Request<pb::GetDataGenerationRequest>,
    ) -> Result<Response<pb::DataGeneration>, Status> {
        let project_id = authenticated(&request)?.project_id;
        let current = self
            .generations
            .read(project_id, || self.snapshots.current(project_id))
            .await
            .map_err(QueryServiceError::from)?;
        Ok(Response::new(pb::DataGeneration {
            generation: current.generation,
        }))
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
        let today = today(now);
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

    /// Erases the user in the database; the result cache and every process's snapshot
    /// follow through the data generation and the erased generation it advanced.
    async fn erase_user(
        &self,
        request: Request<pb::EraseUserRequest>,
    ) -> Result<Response<pb::EraseUserResponse>, Status> {
        let project_id = authenticated(&request)
            .map_err(|_| QueryServiceError::Unauthenticated)?
            .project_id;
        let user_id = request.get_ref().user_id.as_str();
        if user_id.is_empty() {
            return Err(QueryServiceError::invalid("user_id", "must not be empty").into());
        }
        let summary = self
            .snapshots
            .erase_user(project_id, user_id)
            .await
            .map_err(QueryServiceError::from)?;
        if summary.generation.is_some() {
            self.purge_cached_answers(project_id).await;
        }
        Ok(Response::new(pb::EraseUserResponse {
            traces_removed: summary.traces_removed,
            spans_removed: summary.spans_removed,
            annotations_removed: summary.annotations_removed,
            traces_rederived: summary.traces_rederived,
            monitor_records_removed: summary.monitor_records_removed,
        }))
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
