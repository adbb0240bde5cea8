//! Erasing a user (docs/spec.md §9): `deleteUser` on `Mutation`, one `EraseUser` call to
//! users-query with the caller's key.

use async_graphql::{Context, Object, SimpleObject};
use userlens_proto::query::v1 as pb;
use userlens_proto::query::v1::users_query_service_client::UsersQueryServiceClient;

use crate::client::{Credentials, QueryClient};
use crate::error::GatewayError;
use crate::model::RPC_COMPLEXITY;
use crate::scalars::BigInt;

/// What an erasure removed; every count 0 when the user had nothing stored (or was
/// erased already).
#[derive(SimpleObject)]
pub(crate) struct DeleteUserPayload {
    /// The user id erased, as given.
    user_id: String,
    /// Traces of the user deleted.
    traces_removed: BigInt,
    /// Spans deleted: every span of those traces (anonymous ones in them included) and the
    /// user's spans in traces of other users.
    spans_removed: BigInt,
    /// Issue and behaviour annotations of the deleted traces.
    annotations_removed: BigInt,
    /// Traces of other users that held spans of this user, derived again without them.
    traces_rederived: BigInt,
    /// Monitor states and events of the user, and monitors watching only this user.
    monitor_records_removed: BigInt,
}

fn count(n: u64) -> BigInt {
    BigInt(i64::try_from(n).unwrap_or(i64::MAX))
}

#[derive(Default)]
pub(crate) struct EraseMutation;

#[Object]
impl EraseMutation {
    /// Erases every trace, span, annotation and monitor record of the user in the caller's
    /// project, and every cached figure of them. Idempotent. A later span of the user makes
    /// a new user.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn delete_user(
        &self,
        ctx: &Context<'_>,
        user_id: String,
    ) -> Result<DeleteUserPayload, GatewayError> {
        let client = ctx
            .data::<QueryClient>()
            .map_err(|_| GatewayError::Internal("schema built without a query client".into()))?;
        let credentials = ctx
            .data::<Credentials>()
            .map_err(|_| GatewayError::Unauthenticated)?;
        if user_id.is_empty() {
            return Err(GatewayError::bad_input(
                "userId",
                "`userId` must not be empty",
            ));
        }
        let (channel, timeout) = client.channel_and_timeout();
        let mut request = tonic::Request::new(pb::EraseUserRequest {
            user_id: user_id.clone(),
        });
        request.set_timeout(timeout);
        request
            .metadata_mut()
            .insert("authorization", credentials.0.clone());
        let mut service = UsersQueryServiceClient::new(channel);
        let outcome = tokio::time::timeout(timeout, service.erase_user(request))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("users-query deadline")));
        let erased = outcome
            .map(tonic::Response::into_inner)
            .map_err(|status| GatewayError::from_status("EraseUser", status))?;
        Ok(DeleteUserPayload {
            user_id,
            traces_removed: count(erased.traces_removed),
            spans_removed: count(erased.spans_removed),
            annotations_removed: count(erased.annotations_removed),
            traces_rederived: count(erased.traces_rederived),
            monitor_records_removed: count(erased.monitor_records_removed),
        })
    }
}
