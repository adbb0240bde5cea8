//! HTTP routes: `POST /graphql`, GraphiQL on `GET /graphql`, `/healthz`, `/metrics`,
//! `GET /export/users.csv`.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::ParseRequestError;
use async_graphql::http::GraphiQLSource;
use async_graphql_axum::GraphQLRequest;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tonic::metadata::AsciiMetadataValue;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::client::{Credentials, KeyCheck, KeyChecks, QueryClient};
use crate::error::{ErrorCode, GatewayError};
use crate::metrics::Metrics;
use crate::schema::{self, GatewaySchema};
use crate::subscriptions::{self, Hub, SocketDeps};

/// A GraphQL request is a query and its variables; anything near this size is not one.
const MAX_BODY_BYTES: usize = 1024 * 1024;
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

#[derive(Clone)]
struct AppState {
    data_schema: GatewaySchema,
    introspection_schema: GatewaySchema,
    client: QueryClient,
    key_checks: KeyChecks,
    metrics: Arc<Metrics>,
    graphiql: Arc<str>,
    hub: Arc<Hub>,
}

pub(crate) fn router(
    client: QueryClient,
    metrics: Arc<Metrics>,
    cors_allowed_origins: &[String],
    hub: Arc<Hub>,
) -> Result<Router, GatewayError> {
    let state = AppState {
        data_schema: schema::data_schema(client.clone(), Arc::clone(&hub)),
        introspection_schema: schema::introspection_schema(),
        client,
        key_checks: KeyChecks::new(),
        metrics,
        graphiql: GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .title("userlens GraphQL")
            .finish()
            .into(),
        hub,
    };
    let router = Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/export/users.csv", get(export_users_csv))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(finish_refusal))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    Ok(match cors_layer(cors_allowed_origins)? {
        Some(cors) => router.layer(cors),
        None => router,
    })
}

/// None when no origin is allowed: browsers then refuse cross-origin calls on their own.
fn cors_layer(allowed_origins: &[String]) -> Result<Option<CorsLayer>, GatewayError> {
    let origins: Vec<&str> = allowed_origins
        .iter()
        .map(|origin| origin.trim().trim_end_matches('/'))
        .filter(|origin| !origin.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow_origin = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        let origins = origins
            .iter()
            .map(|origin| {
                let valid = origin.contains("://") && !origin.contains(char::is_whitespace);
                HeaderValue::from_str(origin)
                    .ok()
                    .filter(|_| valid)
                    .ok_or_else(|| GatewayError::InvalidCorsOrigin((*origin).to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(origins)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([AUTHORIZATION, CONTENT_TYPE, ACCEPT])
            .max_age(CORS_MAX_AGE),
    ))
}

/// GraphiQL, or a `graphql-transport-ws` WebSocket when the request asks for an upgrade
/// (`subscriptions.rs`).
async fn graphiql(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let wants_upgrade = parts
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_upgrade {
        return Html(state.graphiql.to_string()).into_response();
    }
    state.metrics.record_request();
    if !subscriptions::offers_protocol(&parts.headers) {
        let error = GatewayError::BadUserInput {
            field: None,
            message: format!(
                "the WebSocket subprotocol must be {}",
                subscriptions::PROTOCOL
            ),
        };
        return render(false, StatusCode::BAD_REQUEST, &failure(&state, error));
    }
    let upgrade =
        match axum::extract::WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => upgrade,
            Err(rejection) => return rejection.into_response(),
        };
    let deps = SocketDeps {
        schema: state.data_schema.clone(),
        client: state.client.clone(),
        key_checks: state.key_checks.clone(),
        metrics: Arc::clone(&state.metrics),
        hub: Arc::clone(&state.hub),
    };
    subscriptions::upgrade(upgrade, &parts.headers, deps)
}

/// 200 `ok` when users-query's grpc.health reports it serving, else 503: the gateway can
/// answer nothing without it.
async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.client.is_serving().await {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "users-query unavailable")
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(AUTHORIZATION)?;
    if value.as_bytes().iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    AsciiMetadataValue::try_from(value.as_bytes())
        .ok()
        .map(Credentials)
}

fn wants_graphql_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains(GRAPHQL_RESPONSE_JSON))
}

/// The caller's key. Extracted before the body, so a request without one is refused
/// (HTTP 401, `UNAUTHENTICATED`) before anything is parsed or any call is made, and one with
/// a key users-query does not know (asked once through `CheckKey`, the answer cached) is
/// refused the same way before its body is read.
struct Authorized(Credentials);

impl FromRequestParts<AppState> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        state.metrics.record_request();
        let refuse = || {
            render(
                wants_graphql_json(&parts.headers),
                StatusCode::UNAUTHORIZED,
                &failure(state, GatewayError::Unauthenticated),
            )
        };
        let Some(credentials) = credentials(&parts.headers) else {
            return Err(refuse());
        };
        match state.key_checks.check(&state.client, &credentials).await {
            KeyCheck::Known | KeyCheck::NotChecked => Ok(Authorized(credentials)),
            KeyCheck::Unknown => Err(refuse()),
        }
    }
}

/// A body that is not a GraphQL request: HTTP 400 (413 when too large) with a
/// `BAD_USER_INPUT` error.
struct NotGraphql(ParseRequestError);

impl From<ParseRequestError> for NotGraphql {
    fn from(error: ParseRequestError) -> Self {
        Self(error)
    }
}

impl IntoResponse for NotGraphql {
    fn into_response(self) -> Response {
        let too_large = matches!(&self.0, ParseRequestError::PayloadTooLarge)
            || matches!(&self.0, ParseRequestError::Io(e) if e.to_string().contains("length limit"));
        let status = if too_large {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        let error = GatewayError::BadUserInput {
            field: None,
            message: format!("not a GraphQL request: {}", self.0),
        };
        render(
            false,
            status,
            &async_graphql::Response::from_errors(vec![error.into()]),
        )
    }
}

/// A body declared as anything but JSON: HTTP 415 with a `BAD_USER_INPUT` error. Without a
/// `Content-Type` the body is read as JSON. Multipart uploads, forms and text are refused
/// before the body is read.
struct JsonBody;

impl FromRequestParts<AppState> for JsonBody {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(CONTENT_TYPE) else {
            return Ok(JsonBody);
        };
        let media_type = value
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if media_type.as_deref() == Some("application/json") {
            return Ok(JsonBody);
        }
        let error = GatewayError::BadUserInput {
            field: None,
            message: "unsupported content type: send the request as application/json".to_owned(),
        };
        Err(render(
            wants_graphql_json(&parts.headers),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &failure(state, error),
        ))
    }
}

/// Answers refused before the body is read (401, 413, 415) close the connection: the unread
/// body would otherwise be taken for the next request, and clients must not reuse it. The
/// body limit's own plain-text 413 (a body declared over 1 MiB) becomes the same 413 with a
/// `BAD_USER_INPUT` GraphQL error as a body found too large while reading.
async fn finish_refusal(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let mut response = if status == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        NotGraphql(ParseRequestError::PayloadTooLarge).into_response()
    } else {
        response
    };
    if matches!(
        status,
        StatusCode::UNAUTHORIZED
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
    ) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn graphql(
    State(state): State<AppState>,
    headers: HeaderMap,
    Authorized(credentials): Authorized,
    _json: JsonBody,
    request: GraphQLRequest<NotGraphql>,
) -> Response {
    let mut request = request.into_inner();
    if request
        .parsed_query()
        .is_ok_and(|document| schema::selection_count(document) > schema::MAX_SELECTIONS)
    {
        let error = GatewayError::BadUserInput {
            field: None,
            message: format!(
                "Query is too complex: more than {} selections",
                schema::MAX_SELECTIONS
            ),
        };
        return render(
            wants_graphql_json(&headers),
            StatusCode::OK,
            &failure(&state, error),
        );
    }
    let operation_name = request.operation_name.clone();
    let introspection_only = request
        .parsed_query()
        .is_ok_and(|document| schema::is_introspection_only(document, operation_name.as_deref()));
    let schema = if introspection_only {
        &state.introspection_schema
    } else {
        &state.data_schema
    };
    let mut response = schema.execute(request.data(credentials)).await;
    let status = classify_errors(&mut response, &state.metrics);
    render(wants_graphql_json(&headers), status, &response)
}

/// `GET /export/users.csv`: the arguments are checked and users-query has accepted them
/// before the 200 is sent; the rows then stream. Refusals are HTTP 400 (401 for the key)
/// with a GraphQL error body, like `/graphql`'s.
async fn export_users_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Authorized(credentials): Authorized,
    uri: axum::http::Uri,
) -> Response {
    let refuse = |error: GatewayError| {
        let status = match error.code() {
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::BadUserInput => StatusCode::BAD_REQUEST,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TooManySubscriptions => StatusCode::TOO_MANY_REQUESTS,
        };
        render(
            wants_graphql_json(&headers),
            status,
            &failure(&state, error),
        )
    };
    let request = match crate::export::parse_request(uri.query()) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    match state.client.export_users(&credentials, request).await {
        Ok(chunks) => (
            [
                (CONTENT_TYPE, crate::export::CSV_CONTENT_TYPE),
                (CONTENT_DISPOSITION, crate::export::CSV_DISPOSITION),
            ],
            crate::export::body(chunks),
        )
            .into_response(),
        Err(error) => refuse(error),
    }
}

fn failure(state: &AppState, error: GatewayError) -> async_graphql::Response {
    state.metrics.record_error(error.code());
    async_graphql::Response::from_errors(vec![error.into()])
}

/// Gives every error a code and picks the HTTP status. Resolvers always set a code; what
/// async-graphql reports without one (syntax, validation, limits, argument coercion) is a
/// fault of the request.
pub(crate) fn classify_errors(
    response: &mut async_graphql::Response,
    metrics: &Metrics,
) -> StatusCode {
    let mut status = StatusCode::OK;
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        let code = match extensions.get("code") {
            Some(async_graphql::Value::String(code)) => ErrorCode::parse(code),
            _ => None,
        };
        let code = code.unwrap_or_else(|| {
            extensions.set("code", ErrorCode::BadUserInput.as_str());
            ErrorCode::BadUserInput
        });
        metrics.record_error(code);
        if code == ErrorCode::Unauthenticated {
            status = StatusCode::UNAUTHORIZED;
        }
    }
    status
}

fn render(
    wants_graphql_json: bool,
    status: StatusCode,
    response: &async_graphql::Response,
) -> Response {
    let content_type = if wants_graphql_json {
        GRAPHQL_RESPONSE_JSON
    } else {
        "application/json"
    };
    match serde_json::to_vec(response) {
        Ok(body) => (status, [(CONTENT_TYPE, content_type)], Body::from(body)).into_response(),
        Err(error) => {
            tracing::error!(%error, "graphql response did not serialize");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_checked() {
        assert!(matches!(cors_layer(&[]), Ok(None)));
        assert!(matches!(cors_layer(&[" ".into()]), Ok(None)));
        assert!(matches!(cors_layer(&["*".into()]), Ok(Some(_))));
        assert!(matches!(
            cors_layer(&[
                "https://app.example.com/".into(),
                "http://localhost:3000".into()
            ]),
            Ok(Some(_))
        ));
        assert!(matches!(
            cors_layer(&["app.example.com".into()]),
            Err(GatewayError::InvalidCorsOrigin(_))
        ));
        assert!(matches!(
            cors_layer(&["https://bad\norigin".into()]),
            Err(GatewayError::InvalidCorsOrigin(_))
        ));
    }

    #[test]
    fn an_unauthenticated_answer_from_users_query_is_http_401() {
        let metrics = Metrics::default();
        let mut response = async_graphql::Response::from_errors(vec![
            GatewayError::Unavailable("down".into()).into(),
            GatewayError::Unauthenticated.into(),
        ]);
        assert_eq!(
            classify_errors(&mut response, &metrics),
            StatusCode::UNAUTHORIZED
        );

        let mut response =
            async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
                "Query is too complex.",
                None,
            )]);
        assert_eq!(classify_errors(&mut response, &metrics), StatusCode::OK);
        let code = response.errors[0]
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .cloned();
        assert_eq!(code, Some(async_graphql::Value::from("BAD_USER_INPUT")));
        let text = metrics.render();
        assert!(text.contains("userlens_gateway_graphql_errors_total{code=\"BAD_USER_INPUT\"} 1"));
        assert!(text.contains("userlens_gateway_graphql_errors_total{code=\"UNAUTHENTICATED\"} 1"));
    }

    #[test]
    fn blank_or_missing_authorization_is_no_credentials() {
        let mut headers = HeaderMap::new();
        assert!(credentials(&headers).is_none());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("  "));
        assert!(credentials(&headers).is_none());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer ul_key"));
        assert!(credentials(&headers).is_some());
    }
}
