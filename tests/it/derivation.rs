//! Trace figures do not depend on how spans arrive: order, split into batches, duplicates.
//! And a write that fails part-way leaves nothing behind.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sea_orm::ConnectionTrait;
use userlens_storage::{
    Annotation, SpanFacts, SpanRecord, StoredSpan, TraceRow, annotate_trace, keys, read,
    write_spans,
};
use userlens_tests::for_each_backend;

/// Random spans of a few traces: parents among earlier spans of the same trace, facts
/// scattered over the spans (a user id only on a late child, several users in one trace,
/// wrappers repeating their children's cost), some errored.
fn random_spans(rng: &mut StdRng) -> Vec<SpanRecord> {
    let mut spans = Vec::new();
    let trace_count = rng.random_range(1..=5);
    for t in 0..trace_count {
        let mut trace_id = [0u8; 16];
        trace_id[0] = 1;
        trace_id[15] = t as u8;
        trace_id[7] = rng.random();
        let span_count = rng.random_range(1..=7);
        let base = rng.random_range(0..1_000_000_i64) * 1_000;
        let mut ids: Vec<[u8; 8]> = Vec::new();
        for s in 0..span_count {
            let span_id = [s as u8 + 1, rng.random(), 0, 0, 0, 0, 0, 1];
            let parent = if s == 0 || rng.random_bool(0.1) {
                None
            } else {
                Some(ids[rng.random_range(0..ids.len())])
            };
            ids.push(span_id);
            let start_ns = base + rng.random_range(0..50) * 1_000;
            let pick = |rng: &mut StdRng, values: &[&str]| -> Option<String> {
                rng.random_bool(0.3)
                    .then(|| values[rng.random_range(0..values.len())].to_owned())
            };
            let is_llm_call = rng.random_bool(0.5);
            let facts = SpanFacts {
                user_id: pick(rng, &["alice", "bob", "100%_user"]),
                user_email: pick(rng, &["a@x.io", "b@x.io"]),
                session_id: pick(rng, &["s1", "s2"]),
                provider: if is_llm_call {
                    pick(rng, &["openai", "anthropic"])
                } else {
                    None
                },
                model: if is_llm_call && rng.random_bool(0.8) {
                    Some("gpt-4o".into())
                } else {
                    None
                },
                is_llm_call,
                input_tokens: is_llm_call.then(|| rng.random_range(0..1000)),
                output_tokens: is_llm_call.then(|| rng.random_range(0..1000)),
                cached_input_tokens: None,
                cost_nano: is_llm_call.then(|| rng.random_range(0..5_000_000)),
                tool_name: pick(rng, &["search", "calculator"]),
                issue_id: pick(rng, &["issue-1", "issue-2"]),
                issue_title: pick(rng, &["Slow answers", "Wrong answer"]),
                behaviours: pick(rng, &["retry", "frustrated"]).into_iter().collect(),
            };
            spans.push(SpanRecord {
                trace_id,
                name: format!("span-{s}"),
                kind: 1,
                status_message: None,
                stored: StoredSpan {
                    span_id,
                    parent_span_id: parent,
                    start_ns,
                    end_ns: start_ns + rng.random_range(0..100_000),
                    status_code: if rng.random_bool(0.15) { 2 } else { 0 },
                    facts,
                },
                attributes_json: "{}".into(),
                dropped_attributes_count: 0,
                resource: std::sync::Arc::new(userlens_storage::ResourceRecord::new(
                    "{}".into(),
                    0,
                )),
            });
        }
    }
    spans
}

async fn all_traces(db: &userlens_storage::DatabaseConnection, project_id: i64) -> Vec<TraceRow> {
    let mut traces = read::traces_changed_since(db, project_id, -1)
        .await
        .expect("read traces");
    traces.sort_by_key(|t| t.trace_id);
    traces
}

#[tokio::test(flavor = "multi_thread")]
async fn any_order_split_or_duplication_gives_the_same_traces() {
    const CASES: u64 = 40;
    for_each_backend!(|database| {
        for seed in 0..CASES {
            let mut rng = StdRng::seed_from_u64(seed);
            let spans = random_spans(&mut rng);
            let in_order = keys::ensure_project(&database.db, &format!("in-order-{seed}"))
                .await
                .expect("project");
            let scrambled = keys::ensure_project(&database.db, &format!("scrambled-{seed}"))
                .await
                .expect("project");

            write_spans(&database.db, in_order, &spans)
                .await
                .expect("write in order");

            // Shuffle, add duplicates of a random subset, then split into random batches.
            let mut deliveries = spans.clone();
            for span in &spans {
                if rng.random_bool(0.3) {
                    deliveries.push(span.clone());
                }
            }
            deliveries.shuffle(&mut rng);
            let mut rest = deliveries.as_slice();
            while !rest.is_empty() {
                let take = rng.random_range(1..=rest.len().min(4));
                let (batch, tail) = rest.split_at(take);
                write_spans(&database.db, scrambled, batch)
                    .await
                    .expect("write a batch");
                rest = tail;
            }
            // The same batch twice.
            write_spans(&database.db, scrambled, &spans[..spans.len().min(3)])
                .await
                .expect("write again");

            let expected = all_traces(&database.db, in_order).await;
            let actual = all_traces(&database.db, scrambled).await;
            assert_eq!(actual, expected, "seed {seed} on {:?}", database.backend);
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_copy_of_a_span_replaces_the_earlier_one() {
    for_each_backend!(|database| {
        let project = keys::ensure_project(&database.db, "p")
            .await
            .expect("project");
        let mut rng = StdRng::seed_from_u64(7);
        let mut spans = random_spans(&mut rng);
        spans.truncate(1);
        spans[0].stored.parent_span_id = None;
        spans[0].stored.facts.user_id = Some("first".into());
        write_spans(&database.db, project, &spans)
            .await
            .expect("write");
        spans[0].stored.facts.user_id = Some("second".into());
        write_spans(&database.db, project, &spans)
            .await
            .expect("write again");
        let traces = all_traces(&database.db, project).await;
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].user_id.as_deref(), Some("second"));
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_that_fails_part_way_leaves_nothing_behind() {
    for_each_backend!(|database| {
        let project = keys::ensure_project(&database.db, "p")
            .await
            .expect("project");
        let mut rng = StdRng::seed_from_u64(11);
        let first = random_spans(&mut rng);
        write_spans(&database.db, project, &first)
            .await
            .expect("first write");
        let spans_before = read::span_count(&database.db, project)
            .await
            .expect("count");
        let generation_before = read::project_generation(&database.db, project)
            .await
            .expect("generation");

        // The trace locks and the spans upsert succeed, reading annotations after them fails:
        // the transaction must take the spans back out and leave the generation where it was.
        database
            .db
            .execute_unprepared("DROP TABLE trace_annotations")
            .await
            .expect("drop trace_annotations");
        let mut second = random_spans(&mut rng);
        for span in &mut second {
            span.trace_id[1] = 0xee;
        }
        let result = write_spans(&database.db, project, &second).await;
        assert!(
            result.is_err(),
            "the write must fail without the trace_annotations table"
        );
        assert_eq!(
            read::span_count(&database.db, project)
                .await
                .expect("count"),
            spans_before
        );
        assert_eq!(
            read::project_generation(&database.db, project)
                .await
                .expect("generation"),
            generation_before
        );
    });
}

/// Writers running at the same time on overlapping traces (as several writer tasks or
/// several ingest processes do) give the same traces as one writer given every span in
/// order, and every committed generation is distinct.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_overlapping_traces_give_the_same_traces() {
    const CASES: u64 = 12;
    for_each_backend!(|database| {
        for seed in 0..CASES {
            let mut rng = StdRng::seed_from_u64(1_000 + seed);
            let mut spans = Vec::new();
            for round in 0..6u8 {
                let mut more = random_spans(&mut rng);
                for span in &mut more {
                    span.trace_id[2] = round;
                }
                spans.extend(more);
            }
            let trace_ids: Vec<[u8; 16]> = {
                let mut ids: Vec<[u8; 16]> = spans.iter().map(|s| s.trace_id).collect();
                ids.sort();
                ids.dedup();
                ids
            };
            let annotated: Vec<[u8; 16]> = trace_ids.iter().step_by(3).copied().collect();
            // One of them names a trace whose spans never arrive.
            let mut ghost = [0xab; 16];
            ghost[0] = seed as u8;
            let annotated: Vec<[u8; 16]> = annotated.into_iter().chain([ghost]).collect();
            let annotation = |trace_id: [u8; 16]| {
                vec![
                    Annotation::Issue {
                        id: format!("issue-{}", trace_id[15] % 3),
                        title: Some("Late annotation".into()),
                    },
                    Annotation::Behaviour("escalated".into()),
                ]
            };

            let in_order = keys::ensure_project(&database.db, &format!("one-writer-{seed}"))
                .await
                .expect("project");
            let concurrent = keys::ensure_project(&database.db, &format!("concurrent-{seed}"))
                .await
                .expect("project");
            for trace_id in &annotated {
                annotate_trace(&database.db, in_order, *trace_id, &annotation(*trace_id))
                    .await
                    .expect("annotate");
            }
            write_spans(&database.db, in_order, &spans)
                .await
                .expect("write in order");

            // Every span at least once, some twice (identical copies), shuffled, in batches
            // of 1..=12 spans, written by many tasks at once alongside the annotations.
            let mut deliveries = spans.clone();
            for span in &spans {
                if rng.random_bool(0.4) {
                    deliveries.push(span.clone());
                }
            }
            deliveries.shuffle(&mut rng);
            let mut batches = Vec::new();
            let mut rest = deliveries.as_slice();
            while !rest.is_empty() {
                let take = rng.random_range(1..=rest.len().min(12));
                let (batch, tail) = rest.split_at(take);
                batches.push(batch.to_vec());
                rest = tail;
            }
            let mut tasks = tokio::task::JoinSet::new();
            for batch in batches {
                let db = database.db.clone();
                tasks.spawn(async move {
                    write_spans(&db, concurrent, &batch)
                        .await
                        .map(|summary| summary.generation)
                });
            }
            for trace_id in annotated.clone() {
                let db = database.db.clone();
                let annotations = annotation(trace_id);
                tasks.spawn(async move {
                    annotate_trace(&db, concurrent, trace_id, &annotations)
                        .await
                        .map(|summary| summary.generation)
                });
            }
            let mut generations = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                let generation = joined.expect("writer task").expect("concurrent write");
                generations.push(generation);
            }
            let committed = generations.len();
            generations.sort_unstable();
            generations.dedup();
            assert_eq!(
                generations.len(),
                committed,
                "every write has its own generation"
            );

            let expected = all_traces(&database.db, in_order).await;
            let actual = all_traces(&database.db, concurrent).await;
            assert_eq!(
                actual.len(),
                trace_ids.len(),
                "no row for a trace without spans"
            );
            assert_eq!(actual, expected, "seed {seed} on {:?}", database.backend);
            assert_eq!(
                read::span_count(&database.db, concurrent)
                    .await
                    .expect("count"),
                read::span_count(&database.db, in_order)
                    .await
                    .expect("count"),
            );
        }
    });
}
