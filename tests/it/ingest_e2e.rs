//! `userlens ingest` as a process on ephemeral ports, fed by the OpenTelemetry SDK's own
//! OTLP exporters over gRPC, HTTP protobuf and HTTP JSON.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::{
    Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use userlens_storage::{keys, read};
use userlens_tests::for_each_backend;
use userlens_tests::process::UserlensProcess;

const KEY: &str = "ul_e2e_test_key_0123456789";

/// Emits one trace for `user`: a root span carrying the user, session and email, an LLM
/// call with tokens and cost, and a tool call.
fn emit_trace(provider: &SdkTracerProvider, user: &str) {
    let tracer = provider.tracer("userlens-e2e");
    tracer.in_span("agent-turn", |cx| {
        let root = cx.span();
        root.set_attribute(KeyValue::new("user.id", user.to_owned()));
        root.set_attribute(KeyValue::new("user.email", format!("{user}@example.com")));
        root.set_attribute(KeyValue::new("session.id", format!("session-{user}")));
        let mut llm = tracer.start("chat gpt-4o");
        llm.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
        llm.set_attribute(KeyValue::new("gen_ai.system", "openai"));
        llm.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 120_i64));
        llm.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 30_i64));
        llm.set_attribute(KeyValue::new("gen_ai.usage.cost", 0.0025_f64));
        llm.end();
        let mut tool = tracer.start("search");
        tool.set_attribute(KeyValue::new("gen_ai.tool.name", "web_search"));
        tool.end();
    });
}

async fn shutdown(provider: SdkTracerProvider) {
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("join the exporter shutdown")
        .expect("the exporter flushed every span");
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_exporters_over_grpc_and_http_are_stored() {
    for_each_backend!(|database| {
        let ingest = UserlensProcess::start(
            &[
                "ingest",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
            ],
            &[
                ("USERLENS_DATABASE_URL", &database.url),
                ("USERLENS_API_KEY", KEY),
            ],
            &["otlp-grpc", "otlp-http"],
        )
        .await;

        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            "authorization",
            format!("Bearer {KEY}").parse().expect("ascii header"),
        );
        let grpc = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{}", ingest.addr("otlp-grpc")))
            .with_metadata(metadata)
            .with_timeout(Duration::from_secs(10))
            .build()
            .expect("gRPC exporter");
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(grpc)
            .build();
        emit_trace(&provider, "grpc-user");
        shutdown(provider).await;

        for (protocol, user) in [
            (Protocol::HttpBinary, "http-proto-user"),
            (Protocol::HttpJson, "http-json-user"),
        ] {
            let headers = HashMap::from([("authorization".to_owned(), format!("Bearer {KEY}"))]);
            let http = SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(format!("http://{}/v1/traces", ingest.addr("otlp-http")))
                .with_headers(headers)
                .with_timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP exporter");
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(http)
                .build();
            emit_trace(&provider, user);
            shutdown(provider).await;
        }

        // Every export above returned after commit, so the rows are there now.
        let project_id = keys::resolve_key(&database.db, KEY)
            .await
            .expect("read keys")
            .expect("the bootstrap key belongs to a project");
        let mut traces = read::traces_changed_since(&database.db, project_id, -1)
            .await
            .expect("read traces");
        traces.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let users: Vec<_> = traces
            .iter()
            .map(|t| t.user_id.clone().unwrap_or_default())
            .collect();
        assert_eq!(users, ["grpc-user", "http-json-user", "http-proto-user"]);
        for trace in &traces {
            let user = trace.user_id.as_deref().unwrap_or_default();
            assert_eq!(
                trace.email.as_deref(),
                Some(format!("{user}@example.com").as_str())
            );
            assert_eq!(trace.session_id, format!("session-{user}"));
            assert_eq!(trace.cost_nano, 2_500_000);
            assert_eq!((trace.input_tokens, trace.output_tokens), (120, 30));
            assert_eq!(trace.tool_calls, 1);
            assert_eq!(trace.models.len(), 1);
            assert_eq!(trace.models[0].model.as_deref(), Some("gpt-4o"));
            assert_eq!(trace.models[0].provider.as_deref(), Some("openai"));
            assert!(trace.end_ns >= trace.start_ns);
        }
        assert_eq!(
            read::span_count(&database.db, project_id)
                .await
                .expect("count spans"),
            9
        );

        ingest.stop().await;
    });
}
