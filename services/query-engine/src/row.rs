/// One trace as derived by ingest: every fact the users page needs about it.
///
/// Times are Unix nanoseconds (UTC). Costs are integer nano-USD (1e-9 USD) so that sums
/// never drift. Token counts are totals over the trace's leaf LLM calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRow {
    pub trace_id: [u8; 16],
    /// Trace time: the earliest span start.
    pub start_ns: i64,
    /// The latest span end (never before `start_ns`).
    pub end_ns: i64,
    /// `None` for an anonymous trace.
    pub user_id: Option<String>,
    pub email: Option<String>,
    /// The session id, or the trace id in lowercase hex when the trace carries none.
    pub session_id: String,
    pub errored: bool,
    pub cost_nano: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// A part of `input_tokens`.
    pub cached_input_tokens: i64,
    /// Number of tool spans.
    pub tool_calls: i64,
    /// Leaf LLM calls grouped by (model, provider), sorted by (model, provider).
    pub models: Vec<ModelUsage>,
    /// Tool spans grouped by tool name, sorted by tool name.
    pub tools: Vec<ToolUsage>,
    /// Issues linked to the trace (from spans and annotations), sorted by id, unique.
    pub issues: Vec<IssueLink>,
    /// Behaviours the trace exhibited, sorted, unique.
    pub behaviours: Vec<String>,
}

/// Leaf LLM calls of one trace with the same (model, provider).
/// A call with no model has `model: None` (it counts for its provider only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUsage {
    pub model: Option<String>,
    pub provider: Option<String>,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cost_nano: i64,
}

/// Tool spans of one trace with the same tool name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolUsage {
    pub tool: String,
    pub calls: i64,
    /// Errored tool spans.
    pub errors: i64,
}

/// An issue linked to a trace, with the title this trace gives it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueLink {
    pub id: String,
    pub title: Option<String>,
}
