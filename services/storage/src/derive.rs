//! The span → trace derivation of SPEC §4.
//!
//! `derive_trace` is a pure function of the set of spans of one trace (the latest copy of
//! each) and its annotations, so a trace row comes out the same whatever the order, split or
//! duplication in which its spans arrived.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use userlens_query_engine::{IssueLink, ModelUsage, ToolUsage, TraceRow};

use crate::span::{Annotation, SpanFacts, StoredSpan};

/// Counts kept on the trace row besides what the query engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedTrace {
    pub row: TraceRow,
    pub span_count: i64,
    pub llm_calls: i64,
}

/// Derives one trace from all of its spans. `spans` must not be empty.
pub fn derive_trace(
    trace_id: [u8; 16],
    spans: &[StoredSpan],
    annotations: &[Annotation],
) -> Option<DerivedTrace> {
    let start_ns = spans.iter().map(|s| s.start_ns).min()?;
    let end_ns = spans.iter().map(|s| s.end_ns).max()?.max(start_ns);

    // The trace-level rule: the root span (no parent) first, then the earliest-starting
    // span, ties by the smaller span id.
    let mut by_precedence: Vec<&StoredSpan> = spans.iter().collect();
    by_precedence.sort_by_key(|s| (s.parent_span_id.is_some(), s.start_ns, s.span_id));
    let first_fact = |pick: fn(&SpanFacts) -> Option<&String>| {
        by_precedence.iter().find_map(|s| pick(&s.facts).cloned())
    };
    let user_id = first_fact(|f| f.user_id.as_ref());
    let email = first_fact(|f| f.user_email.as_ref());
    let session_id = first_fact(|f| f.session_id.as_ref()).unwrap_or_else(|| hex::encode(trace_id));

    let errored = spans.iter().any(StoredSpan::errored);
    let leaves = leaf_llm_calls(spans);

    let mut models: BTreeMap<(Option<String>, Option<String>), ModelUsage> = BTreeMap::new();
    let (mut input_tokens, mut output_tokens, mut cached_input_tokens, mut cost_nano) =
        (0i64, 0i64, 0i64, 0i64);
    for span in &leaves {
        let f = &span.facts;
        let (input, output, cached, cost) = (
            f.input_tokens.unwrap_or(0),
            f.output_tokens.unwrap_or(0),
            f.cached_input_tokens.unwrap_or(0),
            f.cost_nano.unwrap_or(0),
        );
        input_tokens = input_tokens.saturating_add(input);
        output_tokens = output_tokens.saturating_add(output);
        cached_input_tokens = cached_input_tokens.saturating_add(cached);
        cost_nano = cost_nano.saturating_add(cost);
        let usage = models
            .entry((f.model.clone(), f.provider.clone()))
            .or_insert_with(|| ModelUsage {
                model: f.model.clone(),
                provider: f.provider.clone(),
                calls: 0,
                input_tokens: 0,
                output_tokens: 0,
                cached_input_tokens: 0,
                cost_nano: 0,
            });
        usage.calls += 1;
        usage.input_tokens = usage.input_tokens.saturating_add(input);
        usage.output_tokens = usage.output_tokens.saturating_add(output);
        usage.cached_input_tokens = usage.cached_input_tokens.saturating_add(cached);
        usage.cost_nano = usage.cost_nano.saturating_add(cost);
    }

    let mut tools: BTreeMap<String, ToolUsage> = BTreeMap::new();
    for span in spans {
        if let Some(tool) = &span.facts.tool_name {
            let usage = tools.entry(tool.clone()).or_insert_with(|| ToolUsage {
                tool: tool.clone(),
                calls: 0,
                errors: 0,
            });
            usage.calls += 1;
            if span.errored() {
                usage.errors += 1;
            }
        }
    }
    let tool_calls = tools.values().map(|t| t.calls).sum();

    // Issue titles follow the trace-level rule among the spans naming that issue; a title
    // from an annotation is used only when no span gives one.
    let mut issues: BTreeMap<String, Option<String>> = BTreeMap::new();
    for span in &by_precedence {
        if let Some(id) = &span.facts.issue_id {
            let title = issues.entry(id.clone()).or_insert(None);
            if title.is_none() {
                title.clone_from(&span.facts.issue_title);
            }
        }
    }
    let mut behaviours: BTreeSet<String> = spans
        .iter()
        .flat_map(|s| s.facts.behaviours.iter().cloned())
        .collect();
    for annotation in annotations {
        match annotation {
            Annotation::Issue { id, title } => {
                let existing = issues.entry(id.clone()).or_insert(None);
                if existing.is_none() {
                    existing.clone_from(title);
                }
            }
            Annotation::Behaviour(name) => {
                behaviours.insert(name.clone());
            }
        }
    }

    Some(DerivedTrace {
        row: TraceRow {
            trace_id,
            start_ns,
            end_ns,
            user_id,
            email,
            session_id,
            errored,
            cost_nano,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            tool_calls,
            models: models.into_values().collect(),
            tools: tools.into_values().collect(),
            issues: issues
                .into_iter()
                .map(|(id, title)| IssueLink { id, title })
                .collect(),
            behaviours: behaviours.into_iter().collect(),
        },
        span_count: spans.len() as i64,
        llm_calls: leaves.len() as i64,
    })
}

/// LLM-call spans with no LLM-call descendant in the trace: a wrapper span that repeats
/// its children's model, tokens or cost is not counted again.
fn leaf_llm_calls(spans: &[StoredSpan]) -> Vec<&StoredSpan> {
    let index_of: HashMap<[u8; 8], usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut has_llm_descendant = vec![false; spans.len()];
    for span in spans.iter().filter(|s| s.facts.is_llm_call) {
        // Walk up the ancestors; a walk stops at an ancestor already marked (its own
        // ancestors were marked by the walk that marked it) and after `spans.len()` steps,
        // which bounds a parent cycle in hostile input.
        let mut parent = span.parent_span_id;
        for _ in 0..spans.len() {
            let Some(index) = parent.and_then(|p| index_of.get(&p).copied()) else {
                break;
            };
            if has_llm_descendant[index] {
                break;
            }
            has_llm_descendant[index] = true;
            parent = spans[index].parent_span_id;
        }
    }
    spans
        .iter()
        .zip(has_llm_descendant)
        .filter(|(s, marked)| s.facts.is_llm_call && !marked)
        .map(|(s, _)| s)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u8, parent: Option<u8>, start: i64) -> StoredSpan {
        StoredSpan {
            span_id: [id; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            start_ns: start,
            end_ns: start + 10,
            status_code: 0,
            facts: SpanFacts::default(),
        }
    }

    fn llm(mut s: StoredSpan, model: &str, cost_nano: i64, input: i64) -> StoredSpan {
        s.facts.is_llm_call = true;
        s.facts.model = Some(model.to_owned());
        s.facts.cost_nano = Some(cost_nano);
        s.facts.input_tokens = Some(input);
        s
    }

    #[test]
    fn wrapper_llm_span_does_not_count_twice() {
        let root = span(1, None, 0);
        let wrapper = llm(span(2, Some(1), 1), "gpt-4o", 300, 30);
        let child_a = llm(span(3, Some(2), 2), "gpt-4o", 100, 10);
        let child_b = llm(span(4, Some(2), 3), "gpt-4o", 200, 20);
        let trace = derive_trace([9; 16], &[root, wrapper, child_a, child_b], &[])
            .expect("spans are not empty");
        assert_eq!(trace.row.cost_nano, 300);
        assert_eq!(trace.row.input_tokens, 30);
        assert_eq!(trace.llm_calls, 2);
        assert_eq!(trace.row.models[0].calls, 2);
    }

    #[test]
    fn root_span_wins_then_earliest_then_smaller_span_id() {
        let mut root = span(5, None, 50);
        let mut early_child = span(2, Some(5), 10);
        let mut tie_child = span(1, Some(5), 10);
        early_child.facts.user_id = Some("early".into());
        tie_child.facts.user_id = Some("tie".into());
        tie_child.facts.session_id = Some("s-tie".into());
        early_child.facts.session_id = Some("s-early".into());
        let spans = vec![early_child.clone(), tie_child.clone(), root.clone()];
        let trace = derive_trace([1; 16], &spans, &[]).expect("spans");
        assert_eq!(trace.row.user_id.as_deref(), Some("tie"));
        assert_eq!(trace.row.session_id, "s-tie");

        root.facts.user_id = Some("root".into());
        let trace = derive_trace([1; 16], &[early_child, tie_child, root], &[]).expect("spans");
        assert_eq!(trace.row.user_id.as_deref(), Some("root"));
        assert_eq!(trace.row.start_ns, 10);
        assert_eq!(trace.row.end_ns, 60);
    }

    #[test]
    fn trace_without_session_is_its_own_session() {
        let trace = derive_trace([0xab; 16], &[span(1, None, 0)], &[]).expect("spans");
        assert_eq!(trace.row.session_id, "ab".repeat(16));
        assert_eq!(trace.row.user_id, None);
    }

    #[test]
    fn parent_cycle_terminates() {
        let a = llm(span(1, Some(2), 0), "m", 1, 1);
        let b = llm(span(2, Some(1), 0), "m", 1, 1);
        let trace = derive_trace([3; 16], &[a, b], &[]).expect("spans");
        assert_eq!(trace.llm_calls, 0);
    }

    #[test]
    fn annotations_add_issues_and_behaviours() {
        let mut s = span(1, None, 0);
        s.facts.issue_id = Some("iss-1".into());
        s.facts.behaviours = vec!["retry".into()];
        let annotations = [
            Annotation::Issue {
                id: "iss-1".into(),
                title: Some("from annotation".into()),
            },
            Annotation::Issue {
                id: "iss-2".into(),
                title: None,
            },
            Annotation::Behaviour("angry".into()),
            Annotation::Behaviour("retry".into()),
        ];
        let trace = derive_trace([4; 16], &[s], &annotations).expect("spans");
        assert_eq!(
            trace.row.issues,
            vec![
                IssueLink {
                    id: "iss-1".into(),
                    title: Some("from annotation".into())
                },
                IssueLink {
                    id: "iss-2".into(),
                    title: None
                },
            ]
        );
        assert_eq!(trace.row.behaviours, vec!["angry", "retry"]);
    }
}
