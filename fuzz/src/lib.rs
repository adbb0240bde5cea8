//! What every fuzz target checks once a body has decoded: the mapping accounts for every
//! span, and accepted spans hold the invariants the storage relies on.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use userlens_ingest::IngestError;
use userlens_ingest::http::{Encoding, decode_body};
use userlens_ingest::mapping::{MAX_FACT_BYTES, convert_resource_spans};

/// Small enough that libFuzzer's inputs can reach it through gzip.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Decodes `body` like the OTLP/HTTP handler (gzip when `gzip`), then maps what decoded.
pub fn decode_and_check(encoding: Encoding, gzip: bool, body: &[u8]) {
    let mut headers = HeaderMap::new();
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    match decode_body(&headers, encoding, Bytes::copy_from_slice(body), BODY_LIMIT) {
        Ok(request) => check_mapping(&request.resource_spans),
        Err(IngestError::Malformed(_) | IngestError::TooLarge { .. }) => {}
        Err(other) => panic!("a body is malformed or too large, not {other:?}"),
    }
}

pub fn check_mapping(resource_spans: &[ResourceSpans]) {
    let input: usize = resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let converted = convert_resource_spans(resource_spans);
    assert_eq!(
        converted.accepted.len() as u64 + converted.rejected,
        input as u64
    );
    assert_eq!(converted.rejected > 0, converted.first_rejection.is_some());
    for record in &converted.accepted {
        let stored = &record.stored;
        assert_ne!(record.trace_id, [0; 16]);
        assert_ne!(stored.span_id, [0; 8]);
        assert!(0 <= stored.start_ns && stored.start_ns <= stored.end_ns);
        let facts = &stored.facts;
        assert!(
            facts
                .cost_nano
                .is_none_or(|c| (0..=2_000_000_000_000_000).contains(&c))
        );
        for tokens in [
            facts.input_tokens,
            facts.output_tokens,
            facts.cached_input_tokens,
        ]
        .into_iter()
        .flatten()
        {
            assert!((0..=1_000_000_000_000).contains(&tokens));
        }
        for text in [
            &facts.user_id,
            &facts.user_email,
            &facts.session_id,
            &facts.provider,
            &facts.model,
            &facts.tool_name,
            &facts.issue_id,
            &facts.issue_title,
        ]
        .into_iter()
        .flatten()
        .chain(&facts.behaviours)
        {
            assert!(!text.is_empty() && text.len() <= MAX_FACT_BYTES && !text.contains('\0'));
        }
        assert!(!record.name.contains('\0'));
        assert!(!record.attributes_json.contains('\0'));
        assert!(!record.resource.attributes_json.contains('\0'));
    }
}
