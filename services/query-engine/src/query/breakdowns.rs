//! Models, providers and tools of one user's traces (SPEC §4.5, §4.7).

use std::cmp::Ordering;

use crate::api::{
    Breakdowns, ModelBreakdown, ProviderBreakdown, TimeRange, TokenUsage, ToolBreakdown,
};
use crate::error::QueryError;
use crate::extras::{Extras, ModelCalls};
use crate::intern::NO_ID;
use crate::numbers::usd;
use crate::snapshot::Snapshot;
use crate::validate;

/// Usage summed over leaf LLM calls (or tool spans) under one name.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    calls: i64,
    errors: i64,
    traces: u64,
    input: i64,
    output: i64,
    cached: i64,
    cost: i128,
    /// 1 + index of the last trace counted, so a trace counts once per name.
    last_trace: usize,
}

impl Usage {
    fn add_trace(&mut self, trace: usize) {
        if self.last_trace != trace + 1 {
            self.last_trace = trace + 1;
            self.traces += 1;
        }
    }

    fn tokens(&self) -> TokenUsage {
        TokenUsage::new(self.input, self.output, self.cached)
    }
}

/// Grows `table` so `id` indexes it; tables are indexed by interned ids.
fn entry(table: &mut Vec<Usage>, id: u32) -> &mut Usage {
    let i = id as usize;
    if table.len() <= i {
        table.resize(i + 1, Usage::default());
    }
    &mut table[i]
}

impl Snapshot {
    /// Breakdowns of `user_id`'s traces in `range` (lifetime when `None`). An unknown user
    /// has empty breakdowns. O(k) for the user's k traces in the window.
    pub fn breakdowns(
        &self,
        user_id: &str,
        range: Option<TimeRange>,
    ) -> Result<Breakdowns, QueryError> {
        let range = validate::optional_range(range)?;
        let Some(user) = self.find_user(user_id) else {
            return Ok(Breakdowns::default());
        };
        let own = self.user_traces_in(user, range);

        let mut models: Vec<Usage> = Vec::new();
        let mut providers: Vec<Usage> = Vec::new();
        let mut tools: Vec<Usage> = Vec::new();
        let mut extras = Extras::default();
        for (trace, t) in own.iter().enumerate() {
            self.extras_of(t.slot, &mut extras);
            for m in &extras.models {
                let (model, provider) = self.model_key_list[m.key as usize];
                if model != NO_ID {
                    add_call(entry(&mut models, m.key), trace, m);
                }
                if provider != NO_ID {
                    add_call(entry(&mut providers, provider), trace, m);
                }
            }
            for t in &extras.tools {
                let usage = entry(&mut tools, t.tool);
                usage.calls = usage.calls.saturating_add(t.calls);
                usage.errors = usage.errors.saturating_add(t.errors);
                usage.add_trace(trace);
            }
        }

        let mut model_rows: Vec<ModelBreakdown> = models
            .iter()
            .enumerate()
            .filter(|(_, u)| u.traces > 0)
            .map(|(key, u)| {
                let (model, provider) = self.model_key_list[key];
                ModelBreakdown {
                    model: self.names.resolve(model).to_owned(),
                    provider: (provider != NO_ID).then(|| self.names.resolve(provider).to_owned()),
                    calls: u.calls,
                    traces: u.traces,
                    tokens: u.tokens(),
                    cost: usd(u.cost),
                }
            })
            .collect();
        model_rows.sort_unstable_by(|a, b| {
            by_calls(a.calls, b.calls)
                .then_with(|| a.model.cmp(&b.model))
                .then_with(|| a.provider.cmp(&b.provider))
        });
        let mut provider_rows: Vec<ProviderBreakdown> = providers
            .iter()
            .enumerate()
            .filter(|(_, u)| u.traces > 0)
            .map(|(id, u)| ProviderBreakdown {
                provider: self.names.resolve(id as u32).to_owned(),
                calls: u.calls,
                traces: u.traces,
                tokens: u.tokens(),
                cost: usd(u.cost),
            })
            .collect();
        provider_rows.sort_unstable_by(|a, b| {
            by_calls(a.calls, b.calls).then_with(|| a.provider.cmp(&b.provider))
        });
        let mut tool_rows: Vec<ToolBreakdown> = tools
            .iter()
            .enumerate()
            .filter(|(_, u)| u.traces > 0)
            .map(|(id, u)| ToolBreakdown {
                tool: self.names.resolve(id as u32).to_owned(),
                calls: u.calls,
                errors: u.errors,
                traces: u.traces,
            })
            .collect();
        tool_rows
            .sort_unstable_by(|a, b| by_calls(a.calls, b.calls).then_with(|| a.tool.cmp(&b.tool)));
        Ok(Breakdowns {
            models: model_rows,
            providers: provider_rows,
            tools: tool_rows,
        })
    }
}

fn add_call(usage: &mut Usage, trace: usize, m: &ModelCalls) {
    usage.calls = usage.calls.saturating_add(m.calls);
    usage.input = usage.input.saturating_add(m.input);
    usage.output = usage.output.saturating_add(m.output);
    usage.cached = usage.cached.saturating_add(m.cached);
    usage.cost += i128::from(m.cost);
    usage.add_trace(trace);
}

/// Calls descending.
fn by_calls(a: i64, b: i64) -> Ordering {
    b.cmp(&a)
}
