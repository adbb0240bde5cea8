//! Custom scalars: GraphQL's `Int` is 32-bit and it has no time types.

use async_graphql::{InputValueError, InputValueResult, Number, Scalar, ScalarType, Value};
use chrono::{NaiveDate, SecondsFormat, Utc};

use crate::error::ErrorCode;

/// Integers of at most this magnitude survive a JSON parser that reads numbers as doubles.
const MAX_JSON_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn bad_input<T: async_graphql::InputType>(message: impl std::fmt::Display) -> InputValueError<T> {
    InputValueError::custom(message).with_extension("code", ErrorCode::BadUserInput.as_str())
}

fn wrong_type<T: async_graphql::InputType>(value: Value) -> InputValueError<T> {
    InputValueError::expected_type(value).with_extension("code", ErrorCode::BadUserInput.as_str())
}

/// An instant in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime(pub chrono::DateTime<Utc>);

impl DateTime {
    /// Accepts any RFC 3339 offset and keeps sub-second precision to the nanosecond.
    pub fn parse_rfc3339(text: &str) -> Result<DateTime, chrono::ParseError> {
        chrono::DateTime::parse_from_rfc3339(text).map(|t| DateTime(t.with_timezone(&Utc)))
    }

    /// RFC 3339 in UTC with `Z`: milliseconds always, micro- or nanoseconds only when the
    /// instant has them, so equal instants always print the same and nothing is rounded.
    pub fn to_rfc3339(self) -> String {
        let nanos = self.0.timestamp_subsec_nanos() % 1_000_000_000;
        let format = if nanos.is_multiple_of(1_000_000) {
            SecondsFormat::Millis
        } else if nanos.is_multiple_of(1_000) {
            SecondsFormat::Micros
        } else {
            SecondsFormat::Nanos
        };
        self.0.to_rfc3339_opts(format, true)
    }

    pub fn to_timestamp(self) -> prost_types::Timestamp {
        // chrono reports a leap second as nanos >= 1e9; protobuf's Timestamp has none.
        let nanos = self.0.timestamp_subsec_nanos().min(999_999_999);
        prost_types::Timestamp {
            seconds: self.0.timestamp(),
            nanos: nanos as i32,
        }
    }

    pub fn from_timestamp(timestamp: &prost_types::Timestamp) -> Option<DateTime> {
        let nanos = u32::try_from(timestamp.nanos).ok()?;
        chrono::DateTime::from_timestamp(timestamp.seconds, nanos).map(DateTime)
    }
}

/// An instant, RFC 3339 (`2026-11-24T08:00:00.123Z`). Output is UTC with `Z` and millisecond
/// precision, or micro/nanoseconds when the instant has them; input accepts any offset.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => DateTime::parse_rfc3339(text).map_err(|error| {
                bad_input(format_args!(
                    "{text:?} is not an RFC 3339 date-time ({error}), e.g. 2026-11-24T08:00:00Z"
                ))
            }),
            _ => Err(wrong_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_rfc3339())
    }
}

/// A UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub NaiveDate);

impl Date {
    /// Exactly `YYYY-MM-DD`: chrono alone would also take unpadded months and days.
    pub fn parse_iso(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape_ok {
            return None;
        }
        NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().map(Date)
    }

    pub fn to_iso(self) -> String {
        self.0.format("%Y-%m-%d").to_string()
    }
}

/// A UTC calendar day, `YYYY-MM-DD`.
#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => Date::parse_iso(text)
                .ok_or_else(|| bad_input(format_args!("{text:?} is not a YYYY-MM-DD date"))),
            _ => Err(wrong_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.to_iso())
    }
}

/// A 64-bit signed integer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BigInt(pub i64);

/// A 64-bit signed integer: a JSON number when its magnitude is below 2^53, else a decimal
/// string (JSON parsers that read numbers as doubles would round it). Input accepts both.
#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(number) => number
                .as_i64()
                .map(BigInt)
                .ok_or_else(|| bad_input(format_args!("{number} is not a 64-bit integer"))),
            Value::String(text) => text
                .parse::<i64>()
                .map(BigInt)
                .map_err(|_| bad_input(format_args!("{text:?} is not a 64-bit integer"))),
            _ => Err(wrong_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        if self.0.unsigned_abs() <= MAX_JSON_SAFE_INTEGER {
            Value::Number(Number::from(self.0))
        } else {
            Value::String(self.0.to_string())
        }
    }
}

/// GraphQL `Int` is 32-bit; counts beyond it are reported as its maximum rather than failing.
pub fn saturating_int(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: async_graphql::InputType>(value: Value) -> Result<T, String> {
        T::parse(Some(value))
            .map_err(|e| e.into_server_error(async_graphql::Pos::default()).message)
    }

    fn string(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    #[test]
    fn big_int_is_a_number_below_two_to_the_53() {
        let safe = (1i64 << 53) - 1;
        assert_eq!(BigInt(safe).to_value(), Value::Number(safe.into()));
        assert_eq!(BigInt(-safe).to_value(), Value::Number((-safe).into()));
        assert_eq!(BigInt(0).to_value(), Value::Number(0.into()));
        assert_eq!(
            serde_json::to_string(&BigInt(safe).to_value())
                .ok()
                .as_deref(),
            Some("9007199254740991")
        );
    }

    #[test]
    fn big_int_is_a_string_from_two_to_the_53() {
        assert_eq!(BigInt(1 << 53).to_value(), string("9007199254740992"));
        assert_eq!(BigInt(-(1 << 53)).to_value(), string("-9007199254740992"));
        assert_eq!(BigInt(i64::MAX).to_value(), string("9223372036854775807"));
        assert_eq!(BigInt(i64::MIN).to_value(), string("-9223372036854775808"));
    }

    #[test]
    fn big_int_round_trips_through_its_output() {
        for n in [
            0,
            1,
            -1,
            (1 << 53) - 1,
            -((1 << 53) - 1),
            1 << 53,
            -(1 << 53),
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(parse::<BigInt>(BigInt(n).to_value()), Ok(BigInt(n)), "{n}");
        }
    }

    #[test]
    fn big_int_accepts_numbers_and_strings() {
        assert_eq!(parse::<BigInt>(Value::Number(42.into())), Ok(BigInt(42)));
        assert_eq!(parse::<BigInt>(string("-42")), Ok(BigInt(-42)));
        assert_eq!(
            parse::<BigInt>(string("9223372036854775807")),
            Ok(BigInt(i64::MAX))
        );
        assert_eq!(
            parse::<BigInt>(Value::Number(i64::MIN.into())),
            Ok(BigInt(i64::MIN))
        );
    }

    #[test]
    fn big_int_rejects_what_is_not_a_64_bit_integer() {
        assert!(parse::<BigInt>(string("9223372036854775808")).is_err());
        assert!(parse::<BigInt>(Value::Number(u64::MAX.into())).is_err());
        assert!(parse::<BigInt>(string("1.5")).is_err());
        assert!(parse::<BigInt>(string("")).is_err());
        assert!(parse::<BigInt>(string("12abc")).is_err());
        let fraction = Number::from_f64(1.5)
            .map(Value::Number)
            .unwrap_or(Value::Null);
        assert!(parse::<BigInt>(fraction).is_err());
        assert!(parse::<BigInt>(Value::Boolean(true)).is_err());
    }

    #[test]
    fn input_errors_carry_bad_user_input() {
        let error = <BigInt as ScalarType>::parse(string("x"))
            .err()
            .map(|e| e.into_server_error(async_graphql::Pos::default()));
        let code = error
            .and_then(|e| e.extensions)
            .and_then(|ext| ext.get("code").cloned());
        assert_eq!(code, Some(string("BAD_USER_INPUT")));
    }

    fn datetime(text: &str) -> DateTime {
        match parse::<DateTime>(string(text)) {
            Ok(t) => t,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn datetime_converts_offsets_to_utc() {
        assert_eq!(
            datetime("2026-11-24T09:30:00+01:30").to_rfc3339(),
            "2026-11-24T08:00:00.000Z"
        );
        assert_eq!(
            datetime("2026-11-24T03:00:00-05:00").to_rfc3339(),
            "2026-11-24T08:00:00.000Z"
        );
        assert_eq!(
            datetime("2026-11-24T23:59:59.5-02:00").to_rfc3339(),
            "2026-11-25T01:59:59.500Z"
        );
        assert_eq!(
            datetime("2026-11-24t08:00:00z").to_rfc3339(),
            "2026-11-24T08:00:00.000Z"
        );
    }

    #[test]
    fn datetime_keeps_sub_second_precision() {
        assert_eq!(
            datetime("2026-11-24T08:00:00.123Z").to_rfc3339(),
            "2026-11-24T08:00:00.123Z"
        );
        assert_eq!(
            datetime("2026-11-24T08:00:00.123456Z").to_rfc3339(),
            "2026-11-24T08:00:00.123456Z"
        );
        assert_eq!(
            datetime("2026-11-24T08:00:00.123456789+00:00").to_rfc3339(),
            "2026-11-24T08:00:00.123456789Z"
        );
        assert_eq!(
            datetime("2026-11-24T08:00:00.000000001Z")
                .0
                .timestamp_subsec_nanos(),
            1
        );
        assert_eq!(
            datetime("2026-11-24T08:00:00.1Z").to_value(),
            string("2026-11-24T08:00:00.100Z")
        );
    }

    #[test]
    fn datetime_converts_to_and_from_protobuf() {
        let t = datetime("1969-12-31T23:59:59.250Z");
        let ts = t.to_timestamp();
        assert_eq!((ts.seconds, ts.nanos), (-1, 250_000_000));
        assert_eq!(DateTime::from_timestamp(&ts), Some(t));
        let t = datetime("2026-11-24T08:00:00.123456789Z");
        assert_eq!(DateTime::from_timestamp(&t.to_timestamp()), Some(t));
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(DateTime::from_timestamp(&bad), None);
    }

    #[test]
    fn datetime_rejects_what_is_not_rfc_3339() {
        for text in [
            "",
            "2026-11-24",
            "2026-11-24T08:00:00",
            "2026-11-24 08:00",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "1764000000",
        ] {
            assert!(parse::<DateTime>(string(text)).is_err(), "{text}");
        }
        assert!(parse::<DateTime>(Value::Number(1.into())).is_err());
    }

    #[test]
    fn date_is_exactly_yyyy_mm_dd() {
        assert_eq!(
            parse::<Date>(string("2026-02-28")).map(Date::to_iso),
            Ok("2026-02-28".to_owned())
        );
        assert_eq!(
            Date(NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default()).to_value(),
            string("2026-01-05")
        );
        for text in [
            "2026-2-28",
            "2026-02-30",
            "2026/02/28",
            "20260228",
            "2026-02-28T00:00:00Z",
        ] {
            assert!(parse::<Date>(string(text)).is_err(), "{text}");
        }
    }

    #[test]
    fn counts_saturate_at_the_graphql_int_bounds() {
        assert_eq!(saturating_int(5), 5);
        assert_eq!(saturating_int(i64::from(i32::MAX) + 1), i32::MAX);
        assert_eq!(saturating_int(i64::MAX), i32::MAX);
        assert_eq!(saturating_int(i64::MIN), i32::MIN);
    }
}
