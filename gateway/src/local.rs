//! The gateway's data schema run in-process for another front end (the MCP server): the
//! same arguments, checks, limits, users-query calls and error codes as `POST /graphql`,
//! without HTTP.

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;

use crate::client::{Credentials, KeyCheck, KeyChecks, QueryClient};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::schema::{self, GatewaySchema};
use crate::subscriptions::{Hub, SubscriptionSettings};

/// Runs GraphQL operations on the gateway's data schema with a caller's key.
#[derive(Clone)]
pub struct LocalGraphql {
    schema: GatewaySchema,
    client: QueryClient,
    key_checks: KeyChecks,
    metrics: Arc<Metrics>,
}

fn credentials(authorization: &str) -> Result<Credentials, GatewayError> {
    if authorization.trim().is_empty() {
        return Err(GatewayError::Unauthenticated);
    }
    AsciiMetadataValue::try_from(authorization)
        .map(Credentials)
        .map_err(|_| GatewayError::Unauthenticated)
}

impl LocalGraphql {
    /// users-query at `query_url`, each call within `request_timeout`. Must be called inside
    /// a tokio runtime; users-query is connected on first use.
    pub fn new(query_url: &str, request_timeout: Duration) -> Result<Self, GatewayError> {
        tokio::runtime::Handle::try_current().map_err(|_| GatewayError::NoRuntime)?;
        let metrics = Arc::new(Metrics::default());
        let client = QueryClient::new(query_url, request_timeout, Arc::clone(&metrics))?;
        let schema = schema::data_schema(client.clone(), Hub::new(SubscriptionSettings::default()));
        Ok(Self {
            schema,
            client,
            key_checks: KeyChecks::new(),
            metrics,
        })
    }

    /// `Ok` when users-query knows the key of `authorization` (`Bearer <key>`), or could not
    /// be asked (the data calls then report why); `Unauthenticated` when it is missing or
    /// unknown.
    pub async fn check_key(&self, authorization: &str) -> Result<(), GatewayError> {
        let credentials = credentials(authorization)?;
        match self.key_checks.check(&self.client, &credentials).await {
            KeyCheck::Known | KeyCheck::NotChecked => Ok(()),
            KeyCheck::Unknown => Err(GatewayError::Unauthenticated),
        }
    }

    /// The GraphQL response (`data`, `errors` each with `extensions.code`) of one query or
    /// mutation, as JSON.
    pub async fn execute(
        &self,
        authorization: &str,
        query: &str,
        variables: serde_json::Value,
    ) -> serde_json::Value {
        let response = match credentials(authorization) {
            Ok(credentials) => {
                let mut request = async_graphql::Request::new(query)
                    .variables(async_graphql::Variables::from_json(variables))
                    .data(credentials);
                if request.parsed_query().is_ok_and(|document| {
                    schema::selection_count(document) > schema::MAX_SELECTIONS
                }) {
                    async_graphql::Response::from_errors(vec![
                        GatewayError::BadUserInput {
                            field: None,
                            message: "Query is too complex".to_owned(),
                        }
                        .into(),
                    ])
                } else {
                    self.schema.execute(request).await
                }
            }
            Err(error) => async_graphql::Response::from_errors(vec![error.into()]),
        };
        let mut response = response;
        crate::http::classify_errors(&mut response, &self.metrics);
        serde_json::to_value(&response).unwrap_or_else(|error| {
            serde_json::json!({ "errors": [{
                "message": format!("response did not serialize: {error}"),
                "extensions": { "code": "INTERNAL" },
            }] })
        })
    }
}
