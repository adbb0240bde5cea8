//! Argument checks shared by every query (SPEC §4.2, §4.3, §5).

use crate::api::TimeRange;
use crate::error::QueryError;

pub(crate) const MAX_PAGE_SIZE: u32 = 200;
pub(crate) const MAX_TREND_BUCKETS: u32 = 60;
pub(crate) const MAX_ACTIVITY_DAYS: u32 = 365;
pub(crate) const MAX_SEARCH_CHARS: usize = 500;
/// Series (`trend` bucket counts, `activity` day counts) one request may ask for: each adds
/// a series to every row of the answer, so the list length multiplies the work and memory
/// of the whole answer. The GraphQL gateway asks for the distinct values of one page, a few.
pub const MAX_SERIES_PER_REQUEST: usize = 16;

pub(crate) fn range(range: TimeRange) -> Result<TimeRange, QueryError> {
    if range.to_ns <= range.from_ns {
        return Err(QueryError::invalid("range", "`to` must be after `from`"));
    }
    Ok(range)
}

pub(crate) fn optional_range(range: Option<TimeRange>) -> Result<Option<TimeRange>, QueryError> {
    range.map(self::range).transpose()
}

pub(crate) fn page_size(first: u32) -> Result<usize, QueryError> {
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(QueryError::invalid(
            "first",
            format!("must be between 1 and {MAX_PAGE_SIZE}, got {first}"),
        ));
    }
    Ok(first as usize)
}

pub(crate) fn trend_buckets(buckets: &[u32]) -> Result<(), QueryError> {
    series_count("buckets", buckets.len())?;
    for &b in buckets {
        if !(1..=MAX_TREND_BUCKETS).contains(&b) {
            return Err(QueryError::invalid(
                "buckets",
                format!("must be between 1 and {MAX_TREND_BUCKETS}, got {b}"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn activity_days(days: &[u32]) -> Result<(), QueryError> {
    series_count("days", days.len())?;
    for &d in days {
        if !(1..=MAX_ACTIVITY_DAYS).contains(&d) {
            return Err(QueryError::invalid(
                "days",
                format!("must be between 1 and {MAX_ACTIVITY_DAYS}, got {d}"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn series_count(field: &'static str, count: usize) -> Result<(), QueryError> {
    if count > MAX_SERIES_PER_REQUEST {
        return Err(QueryError::invalid(
            field,
            format!("at most {MAX_SERIES_PER_REQUEST} series per request, got {count}"),
        ));
    }
    Ok(())
}

/// The lowercase needle, or `None` when the search filters nothing.
pub(crate) fn search(search: Option<&str>) -> Result<Option<String>, QueryError> {
    let Some(trimmed) = search.map(str::trim) else {
        return Ok(None);
    };
    let chars = trimmed.chars().count();
    if chars > MAX_SEARCH_CHARS {
        return Err(QueryError::invalid(
            "search",
            format!("must be at most {MAX_SEARCH_CHARS} characters, got {chars}"),
        ));
    }
    if trimmed.is_empty() {
        return Ok(None);
    }
    Ok(Some(trimmed.to_lowercase()))
}
