//! The `traces.details` column: the per-trace lists the users page needs (usage per model
//! and per tool, issues, behaviours), protobuf-encoded so that one row per trace carries
//! everything and loads in one scan.

use prost::Message;
use userlens_query_engine::{IssueLink, ModelUsage, ToolUsage, TraceRow};

use crate::entities::traces;
use crate::error::StorageError;

#[derive(Clone, PartialEq, Message)]
struct TraceDetails {
    #[prost(message, repeated, tag = "1")]
    models: Vec<ModelUsageMessage>,
    #[prost(message, repeated, tag = "2")]
    tools: Vec<ToolUsageMessage>,
    #[prost(message, repeated, tag = "3")]
    issues: Vec<IssueMessage>,
    #[prost(string, repeated, tag = "4")]
    behaviours: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ModelUsageMessage {
    #[prost(string, optional, tag = "1")]
    model: Option<String>,
    #[prost(string, optional, tag = "2")]
    provider: Option<String>,
    #[prost(int64, tag = "3")]
    calls: i64,
    #[prost(int64, tag = "4")]
    input_tokens: i64,
    #[prost(int64, tag = "5")]
    output_tokens: i64,
    #[prost(int64, tag = "6")]
    cached_input_tokens: i64,
    #[prost(int64, tag = "7")]
    cost_nano: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ToolUsageMessage {
    #[prost(string, tag = "1")]
    tool: String,
    #[prost(int64, tag = "2")]
    calls: i64,
    #[prost(int64, tag = "3")]
    errors: i64,
}

#[derive(Clone, PartialEq, Message)]
struct IssueMessage {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, optional, tag = "2")]
    title: Option<String>,
}

/// Encodes the list fields of a trace row for the `details` column.
pub fn encode_details(row: &TraceRow) -> Vec<u8> {
    TraceDetails {
        models: row
            .models
            .iter()
            .map(|m| ModelUsageMessage {
                model: m.model.clone(),
                provider: m.provider.clone(),
                calls: m.calls,
                input_tokens: m.input_tokens,
                output_tokens: m.output_tokens,
                cached_input_tokens: m.cached_input_tokens,
                cost_nano: m.cost_nano,
            })
            .collect(),
        tools: row
            .tools
            .iter()
            .map(|t| ToolUsageMessage {
                tool: t.tool.clone(),
                calls: t.calls,
                errors: t.errors,
            })
            .collect(),
        issues: row
            .issues
            .iter()
            .map(|i| IssueMessage {
                id: i.id.clone(),
                title: i.title.clone(),
            })
            .collect(),
        behaviours: row.behaviours.clone(),
    }
    .encode_to_vec()
}

/// Rebuilds the query engine's row from a stored trace row.
pub fn trace_row_from_model(model: traces::Model) -> Result<TraceRow, StorageError> {
    let trace_id: [u8; 16] = model
        .trace_id
        .as_slice()
        .try_into()
        .map_err(|_| StorageError::Corrupt("trace id is not 16 bytes".into()))?;
    let details = TraceDetails::decode(model.details.as_slice())
        .map_err(|e| StorageError::Corrupt(format!("trace details do not decode: {e}")))?;
    Ok(TraceRow {
        trace_id,
        start_ns: model.started_ns,
        end_ns: model.ended_ns,
        user_id: model.user_id,
        email: model.email,
        session_id: model.session_id,
        errored: model.errored,
        cost_nano: model.cost_nano,
        input_tokens: model.input_tokens,
        output_tokens: model.output_tokens,
        cached_input_tokens: model.cached_input_tokens,
        tool_calls: i64::from(model.tool_calls),
        models: details
            .models
            .into_iter()
            .map(|m| ModelUsage {
                model: m.model,
                provider: m.provider,
                calls: m.calls,
                input_tokens: m.input_tokens,
                output_tokens: m.output_tokens,
                cached_input_tokens: m.cached_input_tokens,
                cost_nano: m.cost_nano,
            })
            .collect(),
        tools: details
            .tools
            .into_iter()
            .map(|t| ToolUsage {
                tool: t.tool,
                calls: t.calls,
                errors: t.errors,
            })
            .collect(),
        issues: details
            .issues
            .into_iter()
            .map(|i| IssueLink {
                id: i.id,
                title: i.title,
            })
            .collect(),
        behaviours: details.behaviours,
    })
}
