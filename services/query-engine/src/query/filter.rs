//! Users-table filters (SPEC §4.8): checked once per request, names resolved to interned
//! ids, then applied to each user that has figures in range.

use crate::api::{TimeRange, UserFilter};
use crate::error::QueryError;
use crate::extras::Extras;
use crate::intern::NO_ID;
use crate::snapshot::{NO_EMAIL, Snapshot, window};

pub(crate) const MAX_FILTER_VALUES: usize = 50;
pub(crate) const MAX_FILTER_VALUE_BYTES: usize = 1_000;

/// A filter ready to apply: bounds in nano-USD, names as ids of this snapshot.
#[derive(Debug, Default)]
pub(crate) struct CompiledFilter {
    min_cost_nano: Option<i128>,
    max_cost_nano: Option<i128>,
    errored_only: bool,
    has_email: Option<bool>,
    /// Per (model, provider) key: whether a call under it meets the models condition.
    model_keys: Option<Vec<bool>>,
    /// Per (model, provider) key: whether a call under it meets the providers condition.
    provider_keys: Option<Vec<bool>>,
    /// Name ids of the tools asked for.
    tools: Option<Vec<u32>>,
    /// `Some(NO_ID)` when the issue or behaviour asked for is not known: nothing matches.
    issue: Option<u32>,
    behaviour: Option<u32>,
}

impl CompiledFilter {
    fn needs_extras(&self) -> bool {
        self.model_keys.is_some()
            || self.provider_keys.is_some()
            || self.tools.is_some()
            || self.issue.is_some()
            || self.behaviour.is_some()
    }
}

fn cost_bound(field: &'static str, usd: Option<f64>) -> Result<Option<i128>, QueryError> {
    let Some(usd) = usd else {
        return Ok(None);
    };
    if !usd.is_finite() || usd < 0.0 {
        return Err(QueryError::invalid(
            field,
            format!("must be a finite, non-negative amount of USD, got {usd}"),
        ));
    }
    // Rounded to the nearest nano-USD; f64 covers far more than any i128 sum can reach.
    Ok(Some((usd * 1e9).round() as i128))
}

fn names(field: &'static str, values: &[String]) -> Result<(), QueryError> {
    if values.len() > MAX_FILTER_VALUES {
        return Err(QueryError::invalid(
            field,
            format!("at most {MAX_FILTER_VALUES} values, got {}", values.len()),
        ));
    }
    for value in values {
        name(field, value)?;
    }
    Ok(())
}

fn name(field: &'static str, value: &str) -> Result<(), QueryError> {
    if value.len() > MAX_FILTER_VALUE_BYTES {
        return Err(QueryError::invalid(
            field,
            format!(
                "each value must be at most {MAX_FILTER_VALUE_BYTES} bytes, got {}",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a filter's values (SPEC §4.8) without a snapshot.
pub(crate) fn check(filter: &UserFilter) -> Result<(), QueryError> {
    let min = cost_bound("filter.min_cost_sum", filter.min_cost_sum)?;
    let max = cost_bound("filter.max_cost_sum", filter.max_cost_sum)?;
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(QueryError::invalid(
            "filter.min_cost_sum",
            "must not be greater than filter.max_cost_sum",
        ));
    }
    names("filter.models", &filter.models)?;
    names("filter.providers", &filter.providers)?;
    names("filter.tools", &filter.tools)?;
    if let Some(issue) = &filter.issue_id {
        name("filter.issue_id", issue)?;
    }
    if let Some(behaviour) = &filter.behaviour {
        name("filter.behaviour", behaviour)?;
    }
    Ok(())
}

impl Snapshot {
    pub(crate) fn compile_filter(&self, filter: &UserFilter) -> Result<CompiledFilter, QueryError> {
        check(filter)?;
        let ids = |values: &[String]| -> Vec<u32> {
            values.iter().filter_map(|v| self.names.get(v)).collect()
        };
        let keys_where = |wanted: &[u32], pick: fn((u32, u32)) -> u32| -> Vec<bool> {
            self.model_key_list
                .iter()
                .map(|&key| {
                    let id = pick(key);
                    id != NO_ID && wanted.contains(&id)
                })
                .collect()
        };
        let lookup =
            |value: &Option<String>| value.as_deref().map(|v| self.names.get(v).unwrap_or(NO_ID));
        Ok(CompiledFilter {
            min_cost_nano: cost_bound("filter.min_cost_sum", filter.min_cost_sum)?,
            max_cost_nano: cost_bound("filter.max_cost_sum", filter.max_cost_sum)?,
            errored_only: filter.errored_only,
            has_email: filter.has_email,
            model_keys: (!filter.models.is_empty())
                .then(|| keys_where(&ids(&filter.models), |(model, _)| model)),
            provider_keys: (!filter.providers.is_empty())
                .then(|| keys_where(&ids(&filter.providers), |(_, provider)| provider)),
            tools: (!filter.tools.is_empty()).then(|| ids(&filter.tools)),
            issue: lookup(&filter.issue_id),
            behaviour: lookup(&filter.behaviour),
        })
    }

    /// Whether a user with these figures in `range` meets every condition of `filter`.
    pub(crate) fn filter_matches(
        &self,
        filter: &CompiledFilter,
        range: TimeRange,
        user: u32,
        cost_nano: i128,
        errored_sessions: u32,
        extras: &mut Extras,
    ) -> bool {
        if filter.min_cost_nano.is_some_and(|min| cost_nano < min)
            || filter.max_cost_nano.is_some_and(|max| cost_nano > max)
            || (filter.errored_only && errored_sessions == 0)
        {
            return false;
        }
        if let Some(wanted) = filter.has_email
            && wanted != (self.by_user.email[user as usize] != NO_EMAIL)
        {
            return false;
        }
        if !filter.needs_extras() {
            return true;
        }
        if filter.issue == Some(NO_ID) || filter.behaviour == Some(NO_ID) {
            return false;
        }
        let mut need_model = filter.model_keys.is_some();
        let mut need_provider = filter.provider_keys.is_some();
        let mut need_tool = filter.tools.is_some();
        let mut need_issue = filter.issue.is_some();
        let mut need_behaviour = filter.behaviour.is_some();
        let wants_links = need_issue || need_behaviour;
        let wants_calls = need_model || need_provider || need_tool;
        for t in window(self.user_traces(user), range) {
            if !wants_calls && !t.has_links {
                continue;
            }
            self.extras_of(t.slot, extras);
            if let Some(keys) = &filter.model_keys {
                need_model &= !extras.models.iter().any(|m| keys[m.key as usize]);
            }
            if let Some(keys) = &filter.provider_keys {
                need_provider &= !extras.models.iter().any(|m| keys[m.key as usize]);
            }
            if let Some(tools) = &filter.tools {
                need_tool &= !extras.tools.iter().any(|c| tools.contains(&c.tool));
            }
            if wants_links && t.has_links {
                if let Some(issue) = filter.issue {
                    need_issue &= !extras.issues.iter().any(|i| i.issue == issue);
                }
                if let Some(behaviour) = filter.behaviour {
                    need_behaviour &= !extras.behaviours.contains(&behaviour);
                }
            }
            if !(need_model || need_provider || need_tool || need_issue || need_behaviour) {
                return true;
            }
        }
        false
    }
}
