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
    /// A token or cost sum of the trace (or of one of its models) went past `i64::MAX` and
    /// was capped there; the write logs it and reports it in `WriteSummary`.
    pub sums_capped: bool,
}

/// Sums of one trace's tokens and costs, exact in `i128` (per-span values are at most 1e15
/// nano-USD and 1e12 tokens, so even millions of spans cannot overflow it) and capped at
/// `i64::MAX` only when stored.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    input_tokens: i128,
    output_tokens: i128,
    cached_input_tokens: i128,
    cost_nano: i128,
}

impl Sums {
    fn add(&mut self, f: &SpanFacts) {
        self.input_tokens += i128::from(f.input_tokens.unwrap_or(0));
        self.output_tokens += i128::from(f.output_tokens.unwrap_or(0));
        self.cached_input_tokens += i128::from(f.cached_input_tokens.unwrap_or(0));
        self.cost_nano += i128::from(f.cost_nano.unwrap_or(0));
    }

    /// (input, output, cached, cost) as stored, and whether any of them was capped.
    fn capped(&self) -> ((i64, i64, i64, i64), bool) {
        let mut capped = false;
        let mut cap = |value: i128| {
            i64::try_from(value).unwrap_or_else(|_| {
                capped = true;
                if value < 0 { i64::MIN } else { i64::MAX }
            })
        };
        let values = (
            cap(self.input_tokens),
            cap(self.output_tokens),
            cap(self.cached_input_tokens),
            cap(self.cost_nano),
        );
        (values, capped)
    }
}

/// Derives one trace from all of its spans; `None` when `spans` is empty.
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

    let mut trace_sums = Sums::default();
    let mut model_sums: BTreeMap<(Option<String>, Option<String>), (i64, Sums)> = BTreeMap::new();
    for span in &leaves {
        let f = &span.facts;
        trace_sums.add(f);
        let (calls, sums) = model_sums
            .entry((f.model.clone(), f.provider.clone()))
            .or_default();
        *calls += 1;
        sums.add(f);
    }
    let ((input_tokens, output_tokens, cached_input_tokens, cost_nano), mut sums_capped) =
        trace_sums.capped();
    let mut models: Vec<ModelUsage> = Vec::with_capacity(model_sums.len());
    for ((model, provider), (calls, sums)) in model_sums {
        let ((input, output, cached, cost), capped) = sums.capped();
        sums_capped |= capped;
        models.push(ModelUsage {
            model,
            provider,
            calls,
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cost_nano: cost,
        });
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
            models,
            tools: tools.into_values().collect(),
            issues: issues
                .into_iter()
                .map(|(id, title)| IssueLink { id, title })
                .collect(),
            behaviours: behaviours.into_iter().collect(),
        },
        span_count: spans.len() as i64,
        llm_calls: leaves.len() as i64,
        sums_capped,
    })
}

/// LLM-call spans with no LLM-call descendant in the trace: a wrapper span that repeats
/// its children's model, tokens or cost is not counted again.
///
/// Parent links are taken as given except where they close a cycle (hostile or buggy
/// input: `a` → `b` → `a`): there the span with the smallest id in the cycle is taken as a
/// root, which turns the cycle into a chain whose last LLM call counts. Without that every
/// member of a cycle would be its own ancestor and the cycle's cost would vanish. The choice
/// depends on the set of spans only, so the derivation stays order-independent.
fn leaf_llm_calls(spans: &[StoredSpan]) -> Vec<&StoredSpan> {
    let index_of: HashMap<[u8; 8], usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let parents = parents_without_cycles(spans, &index_of);
    let mut has_llm_descendant = vec![false; spans.len()];
    for (index, span) in spans.iter().enumerate() {
        if !span.facts.is_llm_call {
            continue;
        }
        // Walk up the ancestors; a walk stops at an ancestor already marked (its own
        // ancestors were marked by the walk that marked it). The parents form a forest, so
        // the walk ends; `spans.len()` steps bound it regardless.
        let mut parent = parents[index];
        for _ in 0..spans.len() {
            let Some(ancestor) = parent else {
                break;
            };
            if has_llm_descendant[ancestor] {
                break;
            }
            has_llm_descendant[ancestor] = true;
            parent = parents[ancestor];
        }
    }
    spans
        .iter()
        .zip(has_llm_descendant)
        .filter(|(s, marked)| s.facts.is_llm_call && !marked)
        .map(|(s, _)| s)
        .collect()
}

/// Each span's parent (by index), with the link from the smallest span id of every parent
/// cycle removed. A parent missing from the trace, or a span naming itself, is no parent.
fn parents_without_cycles(
    spans: &[StoredSpan],
    index_of: &HashMap<[u8; 8], usize>,
) -> Vec<Option<usize>> {
    let mut parents: Vec<Option<usize>> = spans
        .iter()
        .map(|s| s.parent_span_id.and_then(|p| index_of.get(&p).copied()))
        .collect();
    // Every span has at most one parent, so each walk up either ends or enters one cycle.
    // 0 = not visited, 1 = on the current walk, 2 = done.
    let mut state = vec![0u8; spans.len()];
    for start in 0..spans.len() {
        let mut walk: Vec<usize> = Vec::new();
        let mut at = Some(start);
        while let Some(index) = at {
            match state[index] {
                2 => break,
                1 => {
                    // `index` is where the walk meets itself: the cycle is the walk from it.
                    let position = walk.iter().position(|&i| i == index).unwrap_or(0);
                    if let Some(&root) = walk[position..].iter().min_by_key(|&&i| spans[i].span_id)
                    {
                        parents[root] = None;
                    }
                    break;
                }
                _ => {
                    state[index] = 1;
                    walk.push(index);
                    at = parents[index];
                }
            }
        }
        for index in walk {
            state[index] = 2;
        }
    }
    parents
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
    fn parent_cycle_keeps_its_cost() {
        // 1 → 2 → 1: the smallest id (1) is taken as the root, so 2 is the leaf call.
        let a = llm(span(1, Some(2), 0), "m", 100, 1);
        let b = llm(span(2, Some(1), 0), "m", 200, 2);
        for spans in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            let trace = derive_trace([3; 16], &spans, &[]).expect("spans");
            assert_eq!(trace.llm_calls, 1);
            assert_eq!(trace.row.cost_nano, 200);
            assert_eq!(trace.row.input_tokens, 2);
        }
        // A span that is its own parent is a leaf.
        let own = llm(span(7, Some(7), 0), "m", 50, 5);
        let trace = derive_trace([3; 16], &[own], &[]).expect("spans");
        assert_eq!(trace.row.cost_nano, 50);
        // A cycle hanging below a tree keeps its cost, and its non-LLM ancestors too.
        let root = span(9, None, 0);
        let c = llm(span(3, Some(4), 1), "m", 10, 0);
        let d = llm(span(4, Some(3), 1), "m", 20, 0);
        let e = llm(span(5, Some(4), 1), "m", 40, 0);
        let trace = derive_trace([3; 16], &[root, c, d, e], &[]).expect("spans");
        // 3 is the cycle's root; 4 is its child and the parent of 5: 5 is the only leaf.
        assert_eq!(trace.row.cost_nano, 40);
        assert_eq!(trace.llm_calls, 1);
    }

    #[test]
    fn sums_past_i64_are_capped_and_reported() {
        let spans: Vec<StoredSpan> = (0..10u8)
            .map(|i| {
                let mut s = llm(span(i + 1, None, 0), "m", i64::MAX / 4, 0);
                s.facts.output_tokens = Some(1);
                s
            })
            .collect();
        let trace = derive_trace([5; 16], &spans, &[]).expect("spans");
        assert!(trace.sums_capped);
        assert_eq!(trace.row.cost_nano, i64::MAX);
        assert_eq!(trace.row.output_tokens, 10);
        assert_eq!(trace.row.models[0].cost_nano, i64::MAX);
        let trace = derive_trace([5; 16], &spans[..3], &[]).expect("spans");
        assert!(!trace.sums_capped);
        assert_eq!(trace.row.cost_nano, 3 * (i64::MAX / 4));
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
