//! `GET /export/users.csv` (SPEC §4.8): every user a users-table request selects, as
//! RFC 4180 CSV, streamed chunk by chunk from users-query's `ExportUsers`: the gateway
//! holds one chunk at a time, whatever the number of rows.

use axum::body::Body;
use futures::StreamExt;
use userlens_proto::query::v1 as pb;

use crate::analytics::UserFilter;
use crate::error::GatewayError;
use crate::model::{OrderDirection, TimeRangeInput, UserOrder, UserOrderField};
use crate::query::search_text;
use crate::scalars::DateTime;

pub(crate) const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";
pub(crate) const CSV_DISPOSITION: &str = "attachment; filename=\"users.csv\"";

const HEADER_ROW: &str = "user_id,email,first_seen_at,last_seen_at,traces,sessions,\
errored_sessions,error_rate,cost_sum_usd,cost_average_usd,cost_median_usd,tokens_input,\
tokens_output,tokens_cached_input,tokens_total\r\n";

/// The query string's arguments, as a users-query export request.
pub(crate) fn parse_request(query: Option<&str>) -> Result<pb::ListUsersRequest, GatewayError> {
    let mut from = None;
    let mut to = None;
    let mut search = None;
    let mut order_field = None;
    let mut direction = None;
    let mut filter = UserFilter::default();
    let mut models = Vec::new();
    let mut providers = Vec::new();
    let mut tools = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = value.into_owned();
        match name.as_ref() {
            "from" => set_once(&mut from, "from", time("from", &value)?)?,
            "to" => set_once(&mut to, "to", time("to", &value)?)?,
            "search" => set_once(&mut search, "search", value)?,
            "orderBy" => set_once(&mut order_field, "orderBy", order_field_of(&value)?)?,
            "direction" => set_once(&mut direction, "direction", direction_of(&value)?)?,
            "minCostSum" => set_once(
                &mut filter.min_cost_sum,
                "minCostSum",
                number("minCostSum", &value)?,
            )?,
            "maxCostSum" => set_once(
                &mut filter.max_cost_sum,
                "maxCostSum",
                number("maxCostSum", &value)?,
            )?,
            "erroredOnly" => set_once(
                &mut filter.errored_only,
                "erroredOnly",
                boolean("erroredOnly", &value)?,
            )?,
            "hasEmail" => set_once(
                &mut filter.has_email,
                "hasEmail",
                boolean("hasEmail", &value)?,
            )?,
            "issueId" => set_once(&mut filter.issue_id, "issueId", value)?,
            "behaviour" => set_once(&mut filter.behaviour, "behaviour", value)?,
            "models" => models.push(value),
            "providers" => providers.push(value),
            "tools" => tools.push(value),
            other => {
                return Err(GatewayError::bad_input(
                    other,
                    format!("unknown query parameter `{other}`"),
                ));
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(GatewayError::bad_input(
            "range",
            "`from` and `to` (RFC 3339) are required",
        ));
    };
    let range = TimeRangeInput { from, to }.validated("range")?;
    filter.models = Some(models);
    filter.providers = Some(providers);
    filter.tools = Some(tools);
    let order = UserOrder {
        field: order_field.unwrap_or(UserOrderField::LastSeen),
        direction: direction.unwrap_or(OrderDirection::Desc),
    };
    let (order_field, order_direction) = UserOrder::to_proto(Some(order));
    Ok(pb::ListUsersRequest {
        range: Some(range.to_proto()),
        search: search_text(search)?,
        order_field: order_field.into(),
        order_direction: order_direction.into(),
        filter: Some(filter.to_proto()?),
        ..Default::default()
    })
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), GatewayError> {
    if slot.is_some() {
        return Err(GatewayError::bad_input(
            name,
            format!("`{name}` is given more than once"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

fn time(name: &str, value: &str) -> Result<DateTime, GatewayError> {
    DateTime::parse_rfc3339(value).map_err(|error| {
        GatewayError::bad_input(name, format!("`{name}` is not an RFC 3339 time: {error}"))
    })
}

fn number(name: &str, value: &str) -> Result<f64, GatewayError> {
    value
        .parse()
        .map_err(|_| GatewayError::bad_input(name, format!("`{name}` is not a number")))
}

fn boolean(name: &str, value: &str) -> Result<bool, GatewayError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(GatewayError::bad_input(
            name,
            format!("`{name}` must be true or false"),
        )),
    }
}

fn order_field_of(value: &str) -> Result<UserOrderField, GatewayError> {
    use UserOrderField as F;
    Ok(match value {
        "LAST_SEEN" => F::LastSeen,
        "FIRST_SEEN" => F::FirstSeen,
        "TRACES" => F::Traces,
        "SESSIONS" => F::Sessions,
        "ERRORED_SESSIONS" => F::ErroredSessions,
        "ERROR_RATE" => F::ErrorRate,
        "COST_SUM" => F::CostSum,
        "COST_AVERAGE" => F::CostAverage,
        "COST_MEDIAN" => F::CostMedian,
        "TOKENS" => F::Tokens,
        "USER_ID" => F::UserId,
        "EMAIL" => F::Email,
        _ => {
            return Err(GatewayError::bad_input(
                "orderBy",
                "`orderBy` must be a UserOrderField, e.g. LAST_SEEN",
            ));
        }
    })
}

fn direction_of(value: &str) -> Result<OrderDirection, GatewayError> {
    match value {
        "ASC" => Ok(OrderDirection::Asc),
        "DESC" => Ok(OrderDirection::Desc),
        _ => Err(GatewayError::bad_input(
            "direction",
            "`direction` must be ASC or DESC",
        )),
    }
}

/// The CSV body: the header row, then each chunk's rows as the chunk arrives. A failure of
/// users-query mid-stream ends the body with an error, so the client sees a cut transfer
/// instead of a short file that looks complete.
pub(crate) fn body(chunks: tonic::Streaming<pb::ExportUsersChunk>) -> Body {
    let header =
        futures::stream::once(async { Ok::<_, tonic::Status>(HEADER_ROW.as_bytes().to_vec()) });
    let rows = chunks.map(|chunk| {
        let chunk = chunk?;
        let mut out = Vec::with_capacity(chunk.users.len() * 160);
        for row in &chunk.users {
            write_row(&mut out, row);
        }
        Ok(out)
    });
    Body::from_stream(header.chain(rows))
}

fn write_row(out: &mut Vec<u8>, row: &pb::UserRow) {
    let cost = row.cost.unwrap_or_default();
    let tokens = row.tokens.unwrap_or_default();
    text_cell(out, &row.user_id);
    out.push(b',');
    text_cell(out, row.email.as_deref().unwrap_or_default());
    out.push(b',');
    time_cell(out, row.first_seen_at.as_ref());
    out.push(b',');
    time_cell(out, row.last_seen_at.as_ref());
    let numbers = [
        row.traces.to_string(),
        row.sessions.to_string(),
        row.errored_sessions.to_string(),
        row.error_rate.to_string(),
        format!("{:.9}", cost.sum),
        cost.average.to_string(),
        cost.median.to_string(),
        tokens.input.to_string(),
        tokens.output.to_string(),
        tokens.cached_input.to_string(),
        tokens.total.to_string(),
    ];
    for number in numbers {
        out.push(b',');
        out.extend_from_slice(number.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn time_cell(out: &mut Vec<u8>, timestamp: Option<&prost_types::Timestamp>) {
    if let Some(time) = timestamp.and_then(DateTime::from_timestamp) {
        out.extend_from_slice(time.to_rfc3339().as_bytes());
    }
}

/// A text cell: prefixed with `'` when a spreadsheet would take it for a formula, quoted
/// (quotes doubled) when it holds a comma, a quote, CR or LF.
fn text_cell(out: &mut Vec<u8>, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = value.contains([',', '"', '\r', '\n']);
    if quoted {
        out.push(b'"');
    }
    if formula {
        out.push(b'\'');
    }
    for byte in value.bytes() {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    if quoted {
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(value: &str) -> String {
        let mut out = Vec::new();
        text_cell(&mut out, value);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn text_cells_are_quoted_and_defused() {
        assert_eq!(cell("alice"), "alice");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("=1+1"), "'=1+1");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tx"), "'\tx");
        assert_eq!(cell("\rx"), "\"'\rx\"");
        assert_eq!(cell("=a,b"), "\"'=a,b\"");
        assert_eq!(cell("a=b"), "a=b");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn parameters_are_checked() {
        let ok = parse_request(Some(
            "from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z&orderBy=COST_SUM&direction=ASC\
             &models=gpt-4o&models=llama%203&erroredOnly=true&minCostSum=0.5",
        ))
        .expect("valid");
        let filter = ok.filter.expect("filter");
        assert_eq!(filter.models, ["gpt-4o", "llama 3"]);
        assert!(filter.errored_only);
        assert_eq!(filter.min_cost_sum, Some(0.5));
        assert_eq!(ok.order_field, pb::UserOrderField::CostSum as i32);
        assert_eq!(ok.order_direction, pb::OrderDirection::Asc as i32);
        for bad in [
            "",
            "from=2026-03-01T00:00:00Z",
            "from=yesterday&to=2026-03-08T00:00:00Z",
            "from=2026-03-08T00:00:00Z&to=2026-03-01T00:00:00Z",
            "from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z&orderBy=NAME",
            "from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z&minCostSum=-1",
            "from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z&minCostSum=2&maxCostSum=1",
            "from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z&hasEmail=yes",
            "from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z&first=10",
            "from=2026-03-01T00:00:00Z&from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z",
        ] {
            let error = parse_request(Some(bad)).expect_err(bad);
            assert_eq!(error.code(), crate::ErrorCode::BadUserInput, "{bad}");
        }
    }
}
