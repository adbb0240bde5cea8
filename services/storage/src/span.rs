//! A span as the storage layer keeps it: identity, timing, status, and the facts read from
//! its attributes (the mapping of SPEC §3.1 happens in ingest).

use std::sync::Arc;

use sha2::{Digest, Sha256};

/// OTLP `STATUS_CODE_ERROR`.
pub const STATUS_CODE_ERROR: i32 = 2;

/// The facts one span carries, already resolved across aliases and resource attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanFacts {
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub session_id: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// A span with a model or an LLM operation name.
    pub is_llm_call: bool,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cached_input_tokens: Option<i64>,
    pub cost_nano: Option<i64>,
    pub tool_name: Option<String>,
    pub issue_id: Option<String>,
    pub issue_title: Option<String>,
    pub behaviours: Vec<String>,
}

/// What the trace derivation needs of a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSpan {
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub status_code: i32,
    pub facts: SpanFacts,
}

impl StoredSpan {
    pub fn errored(&self) -> bool {
        self.status_code == STATUS_CODE_ERROR
    }
}

/// A validated span ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub name: String,
    pub kind: i32,
    pub status_message: Option<String>,
    pub stored: StoredSpan,
    /// The span's attributes as a JSON object.
    pub attributes_json: String,
    /// Attributes the sender dropped (OTLP `dropped_attributes_count`) plus those dropped by
    /// the ingest limits.
    pub dropped_attributes_count: u32,
    /// The resource the span was sent under, shared by every span of that resource in a
    /// request (stored once per project in `resources`).
    pub resource: Arc<ResourceRecord>,
}

/// The attributes of one OTLP resource, stored once per (project, hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRecord {
    /// SHA-256 of `attributes_json`.
    pub hash: [u8; 32],
    /// The resource's attributes as a JSON object.
    pub attributes_json: String,
    /// Attributes the sender dropped plus those dropped by the ingest limits.
    pub dropped_attributes_count: u32,
}

impl ResourceRecord {
    pub fn new(attributes_json: String, dropped_attributes_count: u32) -> Self {
        Self {
            hash: Sha256::digest(attributes_json.as_bytes()).into(),
            attributes_json,
            dropped_attributes_count,
        }
    }
}

/// An issue or behaviour attached to a trace after the fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Annotation {
    Issue { id: String, title: Option<String> },
    Behaviour(String),
}
