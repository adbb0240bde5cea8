//! What every transport shares: authenticate, convert, write, report.

use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use userlens_storage::{Annotation, DatabaseConnection, KeyResolver, annotate_trace};

use crate::error::IngestError;
use crate::mapping::convert_resource_spans;
use crate::metrics::IngestMetrics;
use crate::writer::BatchWriter;

/// The result of one accepted export: what was written and what was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    pub accepted: u64,
    pub rejected: u64,
    pub first_rejection: Option<String>,
}

pub struct Ingestor {
    pub db: DatabaseConnection,
    /// Shared with the gRPC authentication layer, so both use one cache.
    pub keys: Arc<KeyResolver>,
    pub writer: BatchWriter,
    pub metrics: Arc<IngestMetrics>,
}

impl Ingestor {
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<i64, IngestError> {
        match self.keys.project_for(authorization).await {
            Ok(Some(project_id)) => Ok(project_id),
            Ok(None) => {
                self.metrics.record_unauthenticated();
                Err(IngestError::Unauthenticated)
            }
            Err(error) => Err(IngestError::unavailable(error.to_string())),
        }
    }

    /// `Overloaded` when the write queue is nearly full: the request is refused before its
    /// spans are read or converted.
    pub fn refuse_when_queue_nearly_full(&self) -> Result<(), IngestError> {
        if self.writer.is_nearly_full() {
            self.metrics.record_shed();
            return Err(IngestError::Overloaded {
                retry_after: crate::writer::RETRY_AFTER,
            });
        }
        Ok(())
    }

    /// Writes the good spans of a request; returns once they are committed.
    pub async fn export(
        &self,
        project_id: i64,
        resource_spans: Vec<ResourceSpans>,
    ) -> Result<ExportOutcome, IngestError> {
        self.refuse_when_queue_nearly_full()?;
        let converted = convert_resource_spans(&resource_spans);
        // The decoded request is not kept while the spans wait for their commit: a queued
        // span then costs its record only.
        drop(resource_spans);
        self.metrics.record_rejected_spans(converted.rejected);
        let accepted = converted.accepted.len() as u64;
        if !converted.accepted.is_empty() {
            self.writer
                .write(project_id, converted.accepted)
                .await
                .inspect_err(|e| {
                    if matches!(e, crate::writer::WriteError::Overloaded { .. }) {
                        self.metrics.record_shed();
                    }
                })?;
        }
        Ok(ExportOutcome {
            accepted,
            rejected: converted.rejected,
            first_rejection: converted.first_rejection,
        })
    }

    pub async fn annotate(
        &self,
        project_id: i64,
        trace_id_hex: &str,
        annotations: Vec<Annotation>,
    ) -> Result<(), IngestError> {
        let invalid_trace = || IngestError::InvalidArgument {
            field: "trace_id",
            message: "expected 32 hex characters".into(),
        };
        let bytes = hex::decode(trace_id_hex.trim()).map_err(|_| invalid_trace())?;
        let trace_id: [u8; 16] = bytes.as_slice().try_into().map_err(|_| invalid_trace())?;
        for annotation in &annotations {
            let (field, value) = match annotation {
                Annotation::Issue { id, .. } => ("issues.id", id),
                Annotation::Behaviour(name) => ("behaviours", name),
            };
            if value.trim().is_empty()
                || value.contains('\0')
                || value.len() > crate::mapping::MAX_FACT_BYTES
            {
                return Err(IngestError::InvalidArgument {
                    field,
                    message: "must be a non-empty string without NUL, at most 4096 bytes".into(),
                });
            }
        }
        annotate_trace(&self.db, project_id, trace_id, &annotations)
            .await
            .map_err(|e| IngestError::unavailable(e.to_string()))?;
        Ok(())
    }
}
