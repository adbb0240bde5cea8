//! GraphQL subscriptions over WebSocket (`graphql-transport-ws`) on `GET /graphql`:
//! `usersOverviewUpdated(range:)` and `userUpdated(userId:)` push a fresh answer on subscribe
//! and then whenever the project's data changed, at most once per interval.
//!
//! How new data is learnt: one poller per API key asks users-query for the project's data
//! generation (`GetDataGeneration`, one shared database read) once per interval, for as long
//! as any subscription of that key is open; every subscription of the key watches that one
//! value. When it changes, each subscription computes its answer again (users-query's result
//! cache makes repeats cheap) no sooner than one interval after its previous answer, and
//! the answer is pushed only when it differs from the last one pushed. Many commits within
//! an interval are therefore one push, and a commit that does not change an answer (another
//! user's trace, for `userUpdated`) is none.
//!
//! Authentication: the `connection_init` payload's `authorization` (`"Bearer <key>"`, as in
//! the HTTP `Authorization` header), else the upgrade request's `Authorization` header.
//! A missing or unknown key closes the socket with 4403; no `connection_init` within
//! [`CONNECTION_INIT_TIMEOUT`] closes it with 4408. When the gateway shuts down, every socket
//! is closed with 1001.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::http::{WebSocket as GraphQLWebSocket, WebSocketProtocols, WsMessage};
use async_graphql::{Context, Data, Executor, Subscription};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use futures::{SinkExt, Stream, StreamExt};
use tokio::sync::watch;
use tonic::metadata::AsciiMetadataValue;

use crate::client::{Credentials, KeyCheck, KeyChecks, QueryClient};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::model::{RPC_COMPLEXITY, TimeRangeInput, UserDetail, UsersOverview};
use crate::query::{UserDetailSelection, deps, user_detail, users_overview};
use crate::schema::{self, GatewaySchema};

/// The only WebSocket subprotocol served.
pub(crate) const PROTOCOL: &str = "graphql-transport-ws";
/// A socket that has not completed `connection_init` within this is closed (4408).
pub const CONNECTION_INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest WebSocket message accepted, as for an HTTP request body.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Subscription limits and pace.
#[derive(Debug, Clone)]
pub struct SubscriptionSettings {
    /// Least time between two pushes of one subscription, and the period of the data
    /// generation polls.
    pub interval: Duration,
    /// Subscriptions open at once per API key, over every connection.
    pub max_per_key: usize,
    /// Subscriptions open at once per WebSocket connection.
    pub max_per_connection: usize,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(1_000),
            max_per_key: 16,
            max_per_connection: 8,
        }
    }
}

type KeyHash = [u8; 32];

fn key_hash(credentials: &Credentials) -> KeyHash {
    use sha2::Digest;
    sha2::Sha256::digest(credentials.0.as_bytes()).into()
}

/// What the poller of a key last learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Observed {
    /// No answer yet, or users-query has not answered since.
    Unknown,
    Generation(i64),
    /// users-query no longer knows the key.
    Revoked,
}

/// The data generation poll of one key, running while any subscription holds it.
struct Poller {
    observed: watch::Receiver<Observed>,
    task: tokio::task::AbortHandle,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn poll_generation(
    client: QueryClient,
    credentials: Credentials,
    interval: Duration,
    observed: watch::Sender<Observed>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match client.data_generation(&credentials).await {
            Ok(generation) => {
                observed.send_if_modified(|last| {
                    let changed = *last != Observed::Generation(generation);
                    *last = Observed::Generation(generation);
                    changed
                });
            }
            Err(GatewayError::Unauthenticated) => {
                observed.send_replace(Observed::Revoked);
                return;
            }
            // The last value stands; the next tick asks again.
            Err(error) => tracing::debug!(%error, "data generation poll failed"),
        }
    }
}

/// Shared by every subscription of the gateway: the pollers, the open-subscription counts
/// and the shutdown signal of the sockets.
pub(crate) struct Hub {
    settings: SubscriptionSettings,
    pollers: Mutex<HashMap<KeyHash, Weak<Poller>>>,
    open_per_key: Mutex<HashMap<KeyHash, usize>>,
    closing: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub(crate) fn new(settings: SubscriptionSettings) -> Arc<Self> {
        let settings = SubscriptionSettings {
            interval: settings.interval.max(Duration::from_millis(1)),
            ..settings
        };
        Arc::new(Self {
            settings,
            pollers: Mutex::new(HashMap::new()),
            open_per_key: Mutex::new(HashMap::new()),
            closing: watch::channel(false).0,
        })
    }

    /// Closes every WebSocket (1001) and refuses new ones.
    pub(crate) fn close_all(&self) {
        self.closing.send_replace(true);
    }

    fn poller(&self, client: &QueryClient, credentials: &Credentials, key: KeyHash) -> Arc<Poller> {
        let mut pollers = lock(&self.pollers);
        if let Some(poller) = pollers.get(&key).and_then(Weak::upgrade)
            && *poller.observed.borrow() != Observed::Revoked
        {
            return poller;
        }
        pollers.retain(|_, poller| poller.strong_count() > 0);
        let (sender, observed) = watch::channel(Observed::Unknown);
        let task = tokio::spawn(poll_generation(
            client.clone(),
            credentials.clone(),
            self.settings.interval,
            sender,
        ))
        .abort_handle();
        let poller = Arc::new(Poller { observed, task });
        pollers.insert(key, Arc::downgrade(&poller));
        poller
    }

    /// Counts a new subscription against both limits, or refuses it.
    fn admit(
        self: &Arc<Self>,
        key: KeyHash,
        connection: &Arc<ConnectionState>,
    ) -> Result<Admission, GatewayError> {
        let mut on_connection = lock(&connection.open);
        if *on_connection >= self.settings.max_per_connection {
            return Err(GatewayError::TooManySubscriptions {
                scope: "connection",
                limit: self.settings.max_per_connection,
            });
        }
        let mut per_key = lock(&self.open_per_key);
        let on_key = per_key.entry(key).or_insert(0);
        if *on_key >= self.settings.max_per_key {
            return Err(GatewayError::TooManySubscriptions {
                scope: "key",
                limit: self.settings.max_per_key,
            });
        }
        *on_key += 1;
        *on_connection += 1;
        Ok(Admission {
            hub: Arc::clone(self),
            connection: Arc::clone(connection),
            key,
        })
    }
}

/// One open subscription in the counts; dropping it (the stream ends or the socket closes)
/// gives its place back.
struct Admission {
    hub: Arc<Hub>,
    connection: Arc<ConnectionState>,
    key: KeyHash,
}

impl Drop for Admission {
    fn drop(&mut self) {
        {
            let mut per_key = lock(&self.hub.open_per_key);
            if let Some(open) = per_key.get_mut(&self.key) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    per_key.remove(&self.key);
                }
            }
        }
        let mut on_connection = lock(&self.connection.open);
        *on_connection = on_connection.saturating_sub(1);
    }
}

/// Per WebSocket connection, in its session data.
#[derive(Default)]
pub(crate) struct ConnectionState {
    open: Mutex<usize>,
}

/// One subscription's inputs and pace.
struct Live {
    client: QueryClient,
    credentials: Credentials,
    observed: watch::Receiver<Observed>,
    interval: Duration,
    last_answer: Instant,
    last_failed: bool,
    _poller: Arc<Poller>,
    _admission: Admission,
}

impl Live {
    fn start(ctx: &Context<'_>) -> Result<Self, GatewayError> {
        let (client, credentials) = deps(ctx)?;
        let hub = ctx
            .data::<Arc<Hub>>()
            .map_err(|_| GatewayError::Internal("schema built without subscriptions".into()))?;
        // Only a WebSocket connection carries this: subscriptions are not served over POST.
        let connection =
            ctx.data::<Arc<ConnectionState>>()
                .map_err(|_| GatewayError::BadUserInput {
                    field: None,
                    message: format!("subscriptions are served over WebSocket ({PROTOCOL})"),
                })?;
        let key = key_hash(credentials);
        let admission = hub.admit(key, connection)?;
        let poller = hub.poller(client, credentials, key);
        let mut observed = poller.observed.clone();
        // Whatever the poller saw so far is covered by the first answer.
        observed.borrow_and_update();
        Ok(Self {
            client: client.clone(),
            credentials: credentials.clone(),
            observed,
            interval: hub.settings.interval,
            last_answer: Instant::now(),
            last_failed: false,
            _poller: poller,
            _admission: admission,
        })
    }

    /// Waits for new data (or, after a failed answer, one interval), then for the interval
    /// since the last answer to pass. An error when the key was revoked.
    async fn next_change(&mut self) -> Result<(), GatewayError> {
        loop {
            let retry = self.last_failed;
            tokio::select! {
                changed = self.observed.changed() => {
                    if changed.is_err() {
                        // The poller cannot go while this holds it; treat it as revoked.
                        return Err(GatewayError::Unauthenticated);
                    }
                }
                () = tokio::time::sleep(self.interval), if retry => {}
            }
            let since = self.last_answer.elapsed();
            if since < self.interval {
                tokio::time::sleep(self.interval - since).await;
            }
            match *self.observed.borrow_and_update() {
                Observed::Revoked => return Err(GatewayError::Unauthenticated),
                Observed::Generation(_) => return Ok(()),
                Observed::Unknown if retry => return Ok(()),
                Observed::Unknown => {}
            }
        }
    }

    /// The first answer at once, then one per change; ends after reporting a revoked key.
    fn answers<T, F, Fut>(self, fetch: F) -> impl Stream<Item = async_graphql::Result<T>> + Send
    where
        T: Send + 'static,
        F: Fn(QueryClient, Credentials) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, GatewayError>> + Send,
    {
        futures::stream::unfold(Some((self, fetch, true)), |state| async move {
            let (mut live, fetch, first) = state?;
            if !first && let Err(error) = live.next_change().await {
                return Some((Err(error.into()), None));
            }
            let answer = fetch(live.client.clone(), live.credentials.clone()).await;
            live.last_answer = Instant::now();
            live.last_failed = answer.is_err();
            Some((answer.map_err(Into::into), Some((live, fetch, false))))
        })
    }
}

/// The `Subscription` root.
pub(crate) struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// `usersOverview(range:)` now, then again after new data of the project changed it (at
    /// most once per `USERLENS_SUBSCRIPTION_INTERVAL_MS`). WebSocket only.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn users_overview_updated(
        &self,
        ctx: &Context<'_>,
        range: TimeRangeInput,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<UsersOverview>> + use<>>
    {
        let range = range.validated("range")?;
        let live = Live::start(ctx)?;
        Ok(live.answers(move |client, credentials| async move {
            users_overview(&client, &credentials, range).await
        }))
    }

    /// `userDetail(userId:)` now, then again after new data of the project changed it (at
    /// most once per `USERLENS_SUBSCRIPTION_INTERVAL_MS`); null while the user has no trace.
    /// WebSocket only.
    #[graphql(complexity = "RPC_COMPLEXITY + child_complexity")]
    async fn user_updated(
        &self,
        ctx: &Context<'_>,
        user_id: String,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Option<UserDetail>>> + use<>>
    {
        let selection = Arc::new(UserDetailSelection::of(&ctx.look_ahead())?);
        let user_id: Arc<str> = user_id.into();
        let live = Live::start(ctx)?;
        Ok(live.answers(move |client, credentials| {
            let (selection, user_id) = (Arc::clone(&selection), Arc::clone(&user_id));
            async move { user_detail(&client, &credentials, &user_id, &selection).await }
        }))
    }
}

/// Runs operations of a socket on the data schema with the HTTP route's limits, gives every
/// error a code, and drops an answer equal to the one pushed before it.
#[derive(Clone)]
struct SocketExecutor {
    schema: GatewaySchema,
    metrics: Arc<Metrics>,
}

impl Executor for SocketExecutor {
    fn execute(
        &self,
        request: async_graphql::Request,
    ) -> impl Future<Output = async_graphql::Response> + Send {
        let schema = self.schema.clone();
        let metrics = Arc::clone(&self.metrics);
        async move {
            let mut response = schema.execute(request).await;
            crate::http::classify_errors(&mut response, &metrics);
            response
        }
    }

    fn execute_stream(
        &self,
        mut request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        self.metrics.record_request();
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
            self.metrics.record_error(error.code());
            let response = async_graphql::Response::from_errors(vec![error.into()]);
            return futures::stream::once(async move { response }).boxed();
        }
        let metrics = Arc::clone(&self.metrics);
        let mut last: Option<serde_json::Value> = None;
        Executor::execute_stream(&self.schema, request, session_data)
            .filter_map(move |mut response| {
                crate::http::classify_errors(&mut response, &metrics);
                let value = serde_json::to_value(&response).ok();
                let unchanged = value.is_some() && value == last;
                last = value;
                futures::future::ready((!unchanged).then_some(response))
            })
            .boxed()
    }
}

/// What a socket needs from the HTTP state.
pub(crate) struct SocketDeps {
    pub(crate) schema: GatewaySchema,
    pub(crate) client: QueryClient,
    pub(crate) key_checks: KeyChecks,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) hub: Arc<Hub>,
}

/// Whether the upgrade request offers `graphql-transport-ws`.
pub(crate) fn offers_protocol(headers: &HeaderMap) -> bool {
    headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|offered| {
            offered
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case(PROTOCOL))
        })
}

/// Upgrades to a `graphql-transport-ws` socket.
pub(crate) fn upgrade(
    upgrade: axum::extract::WebSocketUpgrade,
    headers: &HeaderMap,
    deps: SocketDeps,
) -> axum::response::Response {
    let header_key = headers.get(AUTHORIZATION).cloned();
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve_socket(socket, deps, header_key))
}

/// The key of a `connection_init` payload (`authorization`, any case), else of the
/// upgrade request.
fn init_credentials(
    payload: &serde_json::Value,
    header: Option<&axum::http::HeaderValue>,
) -> Option<Credentials> {
    let from_payload = payload.as_object().and_then(|fields| {
        fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, value)| value.as_str())
            .map(|value| value.as_bytes().to_vec())
    });
    let value = from_payload.or_else(|| header.map(|h| h.as_bytes().to_vec()))?;
    if value.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    AsciiMetadataValue::try_from(value.as_slice())
        .ok()
        .map(Credentials)
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn serve_socket(
    socket: WebSocket,
    deps: SocketDeps,
    header_key: Option<axum::http::HeaderValue>,
) {
    let SocketDeps {
        schema,
        client,
        key_checks,
        metrics,
        hub,
    } = deps;
    let mut closing = hub.closing.subscribe();
    let (mut sink, stream) = socket.split();
    if *closing.borrow_and_update() {
        let _ = sink.send(close(1001, "server shutting down")).await;
        return;
    }
    let input = stream
        .take_while(|message| futures::future::ready(message.is_ok()))
        .filter_map(|message| {
            futures::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let refused = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicBool::new(false));
    let on_init = {
        let (refused, accepted) = (Arc::clone(&refused), Arc::clone(&accepted));
        let metrics = Arc::clone(&metrics);
        move |payload: serde_json::Value| async move {
            let known = match init_credentials(&payload, header_key.as_ref()) {
                Some(credentials) => match key_checks.check(&client, &credentials).await {
                    KeyCheck::Known | KeyCheck::NotChecked => Some(credentials),
                    KeyCheck::Unknown => None,
                },
                None => None,
            };
            let Some(credentials) = known else {
                refused.store(true, Ordering::SeqCst);
                metrics.record_error(GatewayError::Unauthenticated.code());
                return Err(async_graphql::Error::new(
                    GatewayError::Unauthenticated.to_string(),
                ));
            };
            accepted.store(true, Ordering::SeqCst);
            let mut data = Data::default();
            data.insert(credentials);
            data.insert(Arc::new(ConnectionState::default()));
            Ok(data)
        }
    };
    let executor = SocketExecutor { schema, metrics };
    let messages = GraphQLWebSocket::new(executor, input, WebSocketProtocols::GraphQLWS)
        .on_connection_init(on_init);
    futures::pin_mut!(messages);
    let init_deadline = tokio::time::sleep(CONNECTION_INIT_TIMEOUT);
    futures::pin_mut!(init_deadline);
    loop {
        let message = tokio::select! {
            message = messages.next() => match message {
                Some(message) => message,
                None => break,
            },
            _ = closing.changed() => {
                let _ = sink.send(close(1001, "server shutting down")).await;
                break;
            }
            () = &mut init_deadline, if !accepted.load(Ordering::SeqCst) => {
                let _ = sink.send(close(4408, "Connection initialisation timeout")).await;
                break;
            }
        };
        let outgoing = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            // graphql-transport-ws: a refused `connection_init` is 4403 Forbidden.
            WsMessage::Close(_, _) if refused.load(Ordering::SeqCst) => {
                close(4403, "Forbidden: missing or unknown API key")
            }
            WsMessage::Close(code, reason) => close(code, &reason),
        };
        let is_close = matches!(outgoing, Message::Close(_));
        if sink.send(outgoing).await.is_err() || is_close {
            break;
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_from_the_payload_then_the_header() {
        let header = axum::http::HeaderValue::from_static("Bearer from_header");
        let key = |payload: serde_json::Value, header: Option<&axum::http::HeaderValue>| {
            init_credentials(&payload, header)
                .map(|c| c.0.to_str().map(str::to_owned).unwrap_or_default())
        };
        assert_eq!(
            key(
                serde_json::json!({"authorization": "Bearer a"}),
                Some(&header)
            ),
            Some("Bearer a".to_owned())
        );
        assert_eq!(
            key(serde_json::json!({"Authorization": "Bearer b"}), None),
            Some("Bearer b".to_owned())
        );
        assert_eq!(
            key(serde_json::json!({}), Some(&header)),
            Some("Bearer from_header".to_owned())
        );
        assert_eq!(key(serde_json::json!(null), None), None);
        assert_eq!(key(serde_json::json!({"authorization": "  "}), None), None);
        assert_eq!(key(serde_json::json!({"authorization": 7}), None), None);
    }

    #[test]
    fn only_graphql_transport_ws_is_offered() {
        let mut headers = HeaderMap::new();
        assert!(!offers_protocol(&headers));
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            axum::http::HeaderValue::from_static("graphql-ws"),
        );
        assert!(!offers_protocol(&headers));
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            axum::http::HeaderValue::from_static("graphql-ws, graphql-transport-ws"),
        );
        assert!(offers_protocol(&headers));
    }
}
