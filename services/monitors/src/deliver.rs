//! Webhook delivery (docs/spec.md §8): pending events are POSTed with their signature and
//! idempotency key; failures are retried with exponential back-off until delivered or out
//! of attempts. At least once: an event is marked delivered only after a 2xx answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hmac::{KeyInit, Mac};
use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use crate::error::MonitorError;
use crate::store::{self, AttemptOutcome, DueEvent};

pub const SIGNATURE_HEADER: &str = "X-Userlens-Signature";
pub const IDEMPOTENCY_HEADER: &str = "X-Userlens-Idempotency-Key";
pub const EVENT_HEADER: &str = "X-Userlens-Event";

type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under the monitor's secret (its UTF-8 bytes).
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// A webhook that does not answer within this is a failed attempt.
    pub timeout: Duration,
    /// Back-off after the first failure; doubled after each further one.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts before an event is `FAILED`.
    pub max_attempts: i32,
    /// How often due events are looked for when nothing wakes the deliverer.
    pub poll: Duration,
    /// Events sent at once.
    pub concurrency: usize,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: 8,
            poll: Duration::from_millis(500),
            concurrency: 8,
        }
    }
}

impl DeliverySettings {
    /// The wait after the `failures`-th failed attempt (1-based).
    pub fn backoff(&self, failures: i32) -> Duration {
        let exponent = u32::try_from(failures.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        self.first_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff)
    }
}

pub struct Deliverer {
    db: DatabaseConnection,
    client: reqwest::Client,
    settings: DeliverySettings,
    wake: Arc<Notify>,
}

impl Deliverer {
    pub fn new(
        db: DatabaseConnection,
        settings: DeliverySettings,
        wake: Arc<Notify>,
    ) -> Result<Self, MonitorError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A webhook answers; it does not send the event elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("userlens-monitors/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| MonitorError::Internal(format!("webhook client: {error}")))?;
        Ok(Self {
            db,
            client,
            settings,
            wake,
        })
    }

    /// Delivers until `shutdown` resolves; an attempt in flight then is retried later.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll) => {}
            }
            let pass = self.deliver_due();
            tokio::select! {
                () = &mut shutdown => return,
                result = pass => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "webhook delivery pass failed");
                    }
                }
            }
        }
    }

    /// Sends every event due now, a batch at a time; returns the number of attempts.
    pub async fn deliver_due(&self) -> Result<usize, MonitorError> {
        let mut attempts = 0;
        loop {
            let now = store::now_ns();
            let due = store::due_events(&self.db, now, 64).await?;
            if due.is_empty() {
                return Ok(attempts);
            }
            let lease = i64::try_from(self.settings.timeout.as_nanos())
                .unwrap_or(i64::MAX)
                .saturating_mul(3);
            let mut claimed = Vec::with_capacity(due.len());
            for event in due {
                if store::claim(&self.db, &event.event, now, lease).await? {
                    claimed.push(event);
                }
            }
            if claimed.is_empty() {
                return Ok(attempts);
            }
            attempts += claimed.len();
            let results: Vec<Result<(), MonitorError>> = futures::stream::iter(claimed)
                .map(|event| self.attempt(event))
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
            for result in results {
                result?;
            }
        }
    }

    async fn attempt(&self, due: DueEvent) -> Result<(), MonitorError> {
        let event = &due.event;
        let body = event.body.clone().into_bytes();
        let sent = self
            .client
            .post(&due.webhook_url)
            .header("Content-Type", "application/json")
            .header(EVENT_HEADER, event.kind.as_str())
            .header(IDEMPOTENCY_HEADER, event.idempotency_key.as_str())
            .header(SIGNATURE_HEADER, signature(&due.secret, &body))
            .body(body)
            .send()
            .await;
        let now = store::now_ns();
        let failures = event.attempts.saturating_add(1);
        let retry_at = |settings: &DeliverySettings| {
            (failures < settings.max_attempts).then(|| {
                let wait = i64::try_from(settings.backoff(failures).as_nanos()).unwrap_or(i64::MAX);
                now.saturating_add(wait)
            })
        };
        let outcome = match sent {
            Ok(response) if response.status().is_success() => AttemptOutcome {
                status: Some(i32::from(response.status().as_u16())),
                error: None,
                delivered: true,
                retry_at_ns: None,
            },
            Ok(response) => AttemptOutcome {
                status: Some(i32::from(response.status().as_u16())),
                error: Some(format!("webhook answered {}", response.status())),
                delivered: false,
                retry_at_ns: retry_at(&self.settings),
            },
            Err(error) => AttemptOutcome {
                status: None,
                error: Some(describe(error)),
                delivered: false,
                retry_at_ns: retry_at(&self.settings),
            },
        };
        tracing::debug!(
            event_id = event.id,
            delivered = outcome.delivered,
            status = ?outcome.status,
            "webhook attempt"
        );
        store::record_attempt(&self.db, event.id, now, &outcome).await
    }
}

/// A short reason for a failed request, without the URL's query (it may hold a token).
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let error = error.without_url();
    format!("{kind}: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = DeliverySettings::default();
        assert_eq!(settings.backoff(1), Duration::from_secs(1));
        assert_eq!(settings.backoff(2), Duration::from_secs(2));
        assert_eq!(settings.backoff(4), Duration::from_secs(8));
        assert_eq!(settings.backoff(20), Duration::from_secs(300));
        assert_eq!(settings.backoff(i32::MAX), Duration::from_secs(300));
    }
}
