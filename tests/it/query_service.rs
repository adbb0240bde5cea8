//! users-query behaviour around the figures: read-your-writes through the cache, Redis
//! unreachable, keyset pagination (also while data arrives), reflection.

use std::collections::HashSet;

use userlens_datagen::{Dataset, DatasetSpec};
use userlens_proto::query::v1::{ListUsersRequest, OrderDirection, TimeRange, UserOrderField};
use userlens_tests::for_each_backend;
use userlens_tests::otlp::{
    kv, request, resource_spans, span, span_id, string, trace_id, with_attributes,
};
use userlens_tests::stack::{CacheChoice, Stack};
use userlens_users_query::convert::ns_to_timestamp as ts;

const NS: i64 = 1_000_000_000;
/// 2026-03-01T00:00:00Z.
const MARCH_1: i64 = 1_772_323_200 * NS;

fn range(from_ns: i64, to_ns: i64) -> Option<TimeRange> {
    Some(TimeRange {
        from: Some(ts(from_ns)),
        to: Some(ts(to_ns)),
    })
}

fn one_trace(
    n: u64,
    user: &str,
    start_ns: i64,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let root = with_attributes(
        span(
            trace_id(n),
            span_id(n),
            None,
            start_ns as u64,
            start_ns as u64 + 1_000,
        ),
        vec![kv("user.id", string(user))],
    );
    request(vec![resource_spans(vec![], vec![root])])
}

async fn user_ids(stack: &Stack, request: ListUsersRequest) -> Vec<(String, i64)> {
    let mut client = stack.query_client().await;
    client
        .list_users(stack.authorized(request))
        .await
        .expect("list users")
        .into_inner()
        .users
        .into_iter()
        .map(|u| (u.user_id, u.traces))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_write_is_in_the_next_answer_through_the_cache() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let list = ListUsersRequest {
            range: range(MARCH_1, MARCH_1 + 86_400 * NS),
            ..Default::default()
        };
        assert!(user_ids(&stack, list.clone()).await.is_empty());
        // Twice: the second answer may come from the cache.
        assert!(user_ids(&stack, list.clone()).await.is_empty());

        stack.export(one_trace(1, "alice", MARCH_1 + NS)).await;
        assert_eq!(
            user_ids(&stack, list.clone()).await,
            vec![("alice".to_owned(), 1)]
        );
        assert_eq!(
            user_ids(&stack, list.clone()).await,
            vec![("alice".to_owned(), 1)]
        );

        stack.export(one_trace(2, "alice", MARCH_1 + 2 * NS)).await;
        stack.export(one_trace(3, "bob", MARCH_1 + 3 * NS)).await;
        assert_eq!(
            user_ids(&stack, list.clone()).await,
            vec![("bob".to_owned(), 1), ("alice".to_owned(), 2)]
        );
        let metrics = stack.query_metrics().await;
        assert!(
            metrics.contains("userlens_query_cache_hits_total"),
            "{metrics}"
        );
        stack.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_answer_from_the_database_when_redis_is_unreachable() {
    for_each_backend!(|database| {
        // Nothing listens on port 1: every Redis call fails at once.
        let stack = Stack::start(&database, CacheChoice::Redis("redis://127.0.0.1:1".into())).await;
        stack.export(one_trace(1, "carol", MARCH_1 + NS)).await;
        let list = ListUsersRequest {
            range: range(MARCH_1, MARCH_1 + 86_400 * NS),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        assert_eq!(
            user_ids(&stack, list.clone()).await,
            vec![("carol".to_owned(), 1)]
        );
        stack.export(one_trace(2, "carol", MARCH_1 + 2 * NS)).await;
        assert_eq!(user_ids(&stack, list).await, vec![("carol".to_owned(), 2)]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let metrics = stack.query_metrics().await;
        let errors = metrics
            .lines()
            .find_map(|l| l.strip_prefix("userlens_query_cache_errors_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        assert!(errors >= 2, "cache errors are counted:\n{metrics}");
        stack.stop().await;
    });
}

const ORDERS: [(UserOrderField, OrderDirection); 9] = [
    (UserOrderField::Unspecified, OrderDirection::Unspecified),
    (UserOrderField::CostSum, OrderDirection::Desc),
    (UserOrderField::CostMedian, OrderDirection::Asc),
    (UserOrderField::CostAverage, OrderDirection::Desc),
    (UserOrderField::Email, OrderDirection::Asc),
    (UserOrderField::ErrorRate, OrderDirection::Desc),
    (UserOrderField::Traces, OrderDirection::Asc),
    (UserOrderField::Tokens, OrderDirection::Desc),
    (UserOrderField::FirstSeen, OrderDirection::Asc),
];

/// Every user id of a walk through the pages of `page_size`, calling `between` after each page.
async fn walk(
    stack: &Stack,
    base: &ListUsersRequest,
    page_size: u32,
    mut between: impl AsyncFnMut(usize),
) -> Vec<String> {
    let mut client = stack.query_client().await;
    let mut seen = Vec::new();
    let mut after = String::new();
    for page in 0.. {
        let response = client
            .list_users(stack.authorized(ListUsersRequest {
                first: Some(page_size),
                after: after.clone(),
                ..base.clone()
            }))
            .await
            .expect("list a page")
            .into_inner();
        assert!(response.users.len() <= page_size as usize);
        seen.extend(response.users.iter().map(|u| u.user_id.clone()));
        if !response.has_next_page {
            break;
        }
        assert_eq!(
            response.end_cursor,
            response
                .users
                .last()
                .map(|u| u.cursor.clone())
                .unwrap_or_default()
        );
        after = response.end_cursor;
        between(page).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_walk_the_whole_ordered_list_even_while_traces_arrive() {
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::ForBackend).await;
        let end_ns = MARCH_1 + 30 * 86_400 * NS;
        let dataset = Dataset::new(DatasetSpec::new(600, 90, 30, 5, end_ns));
        for start in (0..600).step_by(150) {
            stack.export(dataset.request(start..start + 150)).await;
        }
        for (field, direction) in ORDERS {
            let base = ListUsersRequest {
                range: range(MARCH_1 + 3_600 * NS + 17, end_ns - 5 * NS),
                order_field: field as i32,
                order_direction: direction as i32,
                ..Default::default()
            };
            let full = user_ids(
                &stack,
                ListUsersRequest {
                    first: Some(200),
                    ..base.clone()
                },
            )
            .await;
            assert!(full.len() > 20, "the dataset has users in range");
            let full: Vec<String> = full.into_iter().map(|(id, _)| id).collect();
            let walked = walk(&stack, &base, 7, async |_| {}).await;
            assert_eq!(walked, full, "{field:?} {direction:?}");
        }

        // New users arriving between pages never make the walk repeat or skip a user whose
        // sort key did not change.
        let mut next_trace = 10_000u64;
        for (field, direction) in ORDERS {
            let base = ListUsersRequest {
                range: range(MARCH_1, end_ns),
                order_field: field as i32,
                order_direction: direction as i32,
                ..Default::default()
            };
            let before: Vec<String> = user_ids(
                &stack,
                ListUsersRequest {
                    first: Some(200),
                    ..base.clone()
                },
            )
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
            let walked = walk(&stack, &base, 9, async |page| {
                next_trace += 1;
                let user = format!("newcomer-{next_trace}-{page}");
                stack
                    .export(one_trace(
                        next_trace,
                        &user,
                        MARCH_1 + (next_trace as i64 % 29) * 86_400 * NS,
                    ))
                    .await;
            })
            .await;
            let unique: HashSet<&String> = walked.iter().collect();
            assert_eq!(unique.len(), walked.len(), "no user repeats ({field:?})");
            let old_users_seen: Vec<&String> = walked
                .iter()
                .filter(|u| !u.starts_with("newcomer-"))
                .collect();
            let before_refs: Vec<&String> = before
                .iter()
                .filter(|u| !u.starts_with("newcomer-"))
                .collect();
            assert_eq!(
                old_users_seen, before_refs,
                "no user skipped, order kept ({field:?})"
            );
        }
        stack.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_the_query_service() {
    use tonic_reflection_client::list_services;
    for_each_backend!(|database| {
        let stack = Stack::start(&database, CacheChoice::InProcess).await;
        let services = list_services(stack.query).await;
        assert!(
            services.contains(&"userlens.query.v1.UsersQueryService".to_owned()),
            "{services:?}"
        );
        assert!(
            services.contains(&"grpc.health.v1.Health".to_owned()),
            "{services:?}"
        );
        let services = list_services(stack.ingest_grpc).await;
        assert!(
            services.contains(&"opentelemetry.proto.collector.trace.v1.TraceService".to_owned()),
            "{services:?}"
        );
        assert!(
            services.contains(&"userlens.ingest.v1.IngestService".to_owned()),
            "{services:?}"
        );
        stack.stop().await;
    });
}

/// What `grpcurl -plaintext ADDR list` asks: the server reflection `list_services` call.
mod tonic_reflection_client {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    pub async fn list_services(addr: std::net::SocketAddr) -> Vec<String> {
        let channel = tonic::transport::Endpoint::new(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect for reflection");
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(futures::stream::iter(vec![request]))
            .await
            .expect("reflection call")
            .into_inner();
        let response = responses
            .message()
            .await
            .expect("reflection answer")
            .expect("one answer");
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }
}
