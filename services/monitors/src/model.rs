//! What a monitor is (docs/spec.md §8) and the checks of its definition.

/// Longest window: 366 days.
pub const MAX_WINDOW_SECONDS: i64 = 366 * 86_400;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_USER_ID_BYTES: usize = 4_096;
pub const MAX_WEBHOOK_URL_BYTES: usize = 2_048;
pub const MAX_MIN_SESSIONS: i64 = 1_000_000;
/// Most monitors one project may define: each is evaluated on every write of the project.
pub const MAX_MONITORS_PER_PROJECT: u64 = 100;

use crate::error::MonitorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    CostAbove,
    ErrorRateAbove,
    TracesAbove,
    Inactive,
}

impl Condition {
    pub const ALL: [Condition; 4] = [
        Condition::CostAbove,
        Condition::ErrorRateAbove,
        Condition::TracesAbove,
        Condition::Inactive,
    ];

    /// The spelling stored in the database and used in webhook bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::CostAbove => "COST_ABOVE",
            Condition::ErrorRateAbove => "ERROR_RATE_ABOVE",
            Condition::TracesAbove => "TRACES_ABOVE",
            Condition::Inactive => "INACTIVE",
        }
    }

    pub fn parse(stored: &str) -> Option<Condition> {
        Condition::ALL.into_iter().find(|c| c.as_str() == stored)
    }
}

/// A monitor's definition, as created or after an update.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSpec {
    pub name: String,
    /// `None`: every user of the project.
    pub user_id: Option<String>,
    pub condition: Condition,
    pub threshold: f64,
    pub min_sessions: i64,
    pub window_seconds: i64,
    pub webhook_url: String,
    pub enabled: bool,
}

impl MonitorSpec {
    /// The definition with its name trimmed, or the first field at fault.
    pub fn validated(mut self) -> Result<MonitorSpec, MonitorError> {
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() {
            return Err(MonitorError::invalid("name", "must not be empty"));
        }
        if self.name.chars().count() > MAX_NAME_CHARS {
            return Err(MonitorError::invalid(
                "name",
                format!("at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if let Some(user_id) = &self.user_id {
            if user_id.is_empty() {
                return Err(MonitorError::invalid(
                    "user_id",
                    "must not be empty (leave it out to watch every user)",
                ));
            }
            if user_id.len() > MAX_USER_ID_BYTES {
                return Err(MonitorError::invalid(
                    "user_id",
                    format!("at most {MAX_USER_ID_BYTES} bytes"),
                ));
            }
        }
        if !(1..=MAX_WINDOW_SECONDS).contains(&self.window_seconds) {
            return Err(MonitorError::invalid(
                "window_seconds",
                format!(
                    "must be between 1 and {MAX_WINDOW_SECONDS}, got {}",
                    self.window_seconds
                ),
            ));
        }
        let threshold = self.threshold;
        if !threshold.is_finite() {
            return Err(MonitorError::invalid(
                "threshold",
                "must be a finite number",
            ));
        }
        match self.condition {
            Condition::CostAbove => {
                if !(0.0..=1e9).contains(&threshold) {
                    return Err(MonitorError::invalid(
                        "threshold",
                        "a cost budget is USD between 0 and 1e9",
                    ));
                }
            }
            Condition::ErrorRateAbove => {
                if !(0.0..1.0).contains(&threshold) {
                    return Err(MonitorError::invalid(
                        "threshold",
                        "an error rate threshold is in [0, 1)",
                    ));
                }
                if !(1..=MAX_MIN_SESSIONS).contains(&self.min_sessions) {
                    return Err(MonitorError::invalid(
                        "min_sessions",
                        format!("must be between 1 and {MAX_MIN_SESSIONS}"),
                    ));
                }
            }
            Condition::TracesAbove => {
                if threshold < 0.0 || threshold.fract() != 0.0 || threshold > 1e12 {
                    return Err(MonitorError::invalid(
                        "threshold",
                        "a trace count threshold is a whole number between 0 and 1e12",
                    ));
                }
            }
            Condition::Inactive => {}
        }
        if self.condition != Condition::ErrorRateAbove {
            self.min_sessions = 1;
        }
        if self.condition == Condition::Inactive {
            self.threshold = 0.0;
        }
        validate_webhook_url(&self.webhook_url)?;
        Ok(self)
    }
}

/// `http://` with a host, nothing else. `https://` is refused with its own message: this
/// build's webhook client has no TLS.
pub fn validate_webhook_url(url: &str) -> Result<(), MonitorError> {
    if url.len() > MAX_WEBHOOK_URL_BYTES {
        return Err(MonitorError::invalid(
            "webhook_url",
            format!("at most {MAX_WEBHOOK_URL_BYTES} bytes"),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|error| MonitorError::invalid("webhook_url", format!("not a URL: {error}")))?;
    match parsed.scheme() {
        "http" => {}
        "https" => {
            return Err(MonitorError::invalid(
                "webhook_url",
                "https webhooks are not supported yet: use http (behind a TLS-terminating proxy \
                 for a remote receiver)",
            ));
        }
        other => {
            return Err(MonitorError::invalid(
                "webhook_url",
                format!("must be http, not {other}"),
            ));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(MonitorError::invalid("webhook_url", "must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(MonitorError::invalid(
            "webhook_url",
            "must not carry credentials; the signature authenticates the sender",
        ));
    }
    Ok(())
}

/// A USD amount in whole nano-USD, rounded to the nearest.
pub fn usd_to_nano(usd: f64) -> i128 {
    (usd * 1e9).round() as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(condition: Condition, threshold: f64) -> MonitorSpec {
        MonitorSpec {
            name: " budget ".into(),
            user_id: None,
            condition,
            threshold,
            min_sessions: 3,
            window_seconds: 86_400,
            webhook_url: "http://127.0.0.1:9/hook".into(),
            enabled: true,
        }
    }

    fn field_of(result: Result<MonitorSpec, MonitorError>) -> &'static str {
        match result {
            Err(MonitorError::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_definition_is_normalised() {
        let checked = spec(Condition::CostAbove, 5.0).validated().expect("valid");
        assert_eq!(checked.name, "budget");
        assert_eq!(checked.min_sessions, 1, "only the error rate uses it");
        let checked = spec(Condition::ErrorRateAbove, 0.5)
            .validated()
            .expect("valid");
        assert_eq!(checked.min_sessions, 3);
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut bad = spec(Condition::CostAbove, 1.0);
        bad.webhook_url = "file:///etc/passwd".into();
        assert_eq!(field_of(bad.validated()), "webhook_url");
        let mut bad = spec(Condition::CostAbove, 1.0);
        bad.webhook_url = "gopher://host/".into();
        assert_eq!(field_of(bad.validated()), "webhook_url");
        let mut bad = spec(Condition::CostAbove, 1.0);
        bad.webhook_url = "not a url".into();
        assert_eq!(field_of(bad.validated()), "webhook_url");
        let mut bad = spec(Condition::CostAbove, 1.0);
        bad.webhook_url = "http://user:pw@host/".into();
        assert_eq!(field_of(bad.validated()), "webhook_url");
        assert_eq!(
            field_of(spec(Condition::CostAbove, -1.0).validated()),
            "threshold"
        );
        assert_eq!(
            field_of(spec(Condition::CostAbove, f64::NAN).validated()),
            "threshold"
        );
        assert_eq!(
            field_of(spec(Condition::ErrorRateAbove, 1.0).validated()),
            "threshold"
        );
        assert_eq!(
            field_of(spec(Condition::TracesAbove, 2.5).validated()),
            "threshold"
        );
        let mut bad = spec(Condition::ErrorRateAbove, 0.5);
        bad.min_sessions = 0;
        assert_eq!(field_of(bad.validated()), "min_sessions");
        let mut bad = spec(Condition::Inactive, 0.0);
        bad.window_seconds = 0;
        assert_eq!(field_of(bad.validated()), "window_seconds");
        let mut bad = spec(Condition::Inactive, 0.0);
        bad.name = "  ".into();
        assert_eq!(field_of(bad.validated()), "name");
        let mut bad = spec(Condition::Inactive, 0.0);
        bad.user_id = Some(String::new());
        assert_eq!(field_of(bad.validated()), "user_id");
    }

    #[test]
    fn http_is_the_accepted_scheme() {
        assert!(validate_webhook_url("http://hooks.example.com/x?y=1").is_ok());
        assert!(validate_webhook_url("http://[::1]:8080/").is_ok());
        let refused = validate_webhook_url("https://hooks.example.com/x");
        assert!(
            matches!(&refused, Err(MonitorError::Invalid { field: "webhook_url", message }) if message.contains("https")),
            "{refused:?}"
        );
    }

    #[test]
    fn usd_rounds_to_the_nearest_nano() {
        assert_eq!(usd_to_nano(0.000_000_001_4), 1);
        assert_eq!(usd_to_nano(1.5), 1_500_000_000);
        assert_eq!(usd_to_nano(0.1 + 0.2), 300_000_000);
    }
}
