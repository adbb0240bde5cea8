//! What every transport shares: authenticate, convert, write, report.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use userlens_storage::{Annotation, DatabaseConnection, KeyResolver, annotate_trace};

use crate::error::IngestError;
use crate::mapping::{
    MAX_BEHAVIOURS_PER_SPAN, MAX_FACT_BYTES, MAX_LINK_VALUE_BYTES, convert_owned_resource_spans,
};
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
    /// Export requests whose bodies are being read, decoded and converted at once, at most
    /// ([`DECODE_SLOTS`]). A request waits for a slot before its body is read and gives it
    /// back once its spans are queued, so the bodies and decoded requests in memory at once
    /// are bounded whatever the number of clients.
    pub decode_slots: Arc<Semaphore>,
}

/// Export requests decoded at once. Decoding and converting is CPU work on one core while
/// the writer's database work takes another; one slot bounds what requests take before
/// they are queued to one body (16 MiB at most), its decoded form (64 MiB at most) and its
/// records, besides the write queue.
pub const DECODE_SLOTS: usize = 1;

/// A decode slot carried from the gRPC layer that took it to the handler, in the request's
/// extensions (which must be `Clone`).
#[derive(Clone)]
pub struct DecodeSlot(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl DecodeSlot {
    pub fn new(permit: OwnedSemaphorePermit) -> Self {
        Self(Arc::new(Mutex::new(Some(permit))))
    }

    /// Gives the slot back (also done when the last clone is dropped).
    pub fn release(&self) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }
}

impl Ingestor {
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<i64, IngestError> {
        match self.keys.project_for(authorization).await {
            Ok(Some(project_id)) => Ok(project_id),
            Ok(None) => {
                self.metrics.record_unauthenticated();
                Err(IngestError::Unauthenticated)
            }
            Err(error) => Err(IngestError::from_storage(&error)),
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

    /// Waits for a decode slot (see `decode_slots`).
    pub async fn decode_slot(&self) -> Result<DecodeSlot, IngestError> {
        Arc::clone(&self.decode_slots)
            .acquire_owned()
            .await
            .map(DecodeSlot::new)
            .map_err(|_| IngestError::internal("decode slots closed".into()))
    }

    /// Writes the good spans of a request; returns once they are committed. `slot`, the
    /// request's decode slot, is given back once its spans are converted.
    pub async fn export(
        &self,
        project_id: i64,
        resource_spans: Vec<ResourceSpans>,
        slot: Option<DecodeSlot>,
    ) -> Result<ExportOutcome, IngestError> {
        self.refuse_when_queue_nearly_full()?;
        // The decoded request is consumed as it is converted, and not kept while the spans
        // wait for their commit: a queued span then costs its record only.
        let converted = convert_owned_resource_spans(resource_spans);
        // The records are queued (or refused) at once below: the next request may decode.
        if let Some(slot) = slot {
            slot.release();
        }
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
        check_annotations(&annotations)?;
        annotate_trace(&self.db, project_id, trace_id, &annotations)
            .await
            .map_err(|e| IngestError::from_storage(&e))?;
        Ok(())
    }
}

/// Most issues, and most behaviours, one `AnnotateTrace` request may link (the same bound as
/// behaviours per span).
pub const MAX_LINKS_PER_ANNOTATION: usize = MAX_BEHAVIOURS_PER_SPAN;

/// Refuses an annotation that could not be stored the same way on every backend: values
/// are index keys (at most `MAX_LINK_VALUE_BYTES`), titles plain text, neither with NUL.
fn check_annotations(annotations: &[Annotation]) -> Result<(), IngestError> {
    let (mut issues, mut behaviours) = (0usize, 0usize);
    for annotation in annotations {
        let (field, value, count) = match annotation {
            Annotation::Issue { id, title } => {
                if let Some(title) = title
                    && (title.contains('\0') || title.len() > MAX_FACT_BYTES)
                {
                    return Err(IngestError::InvalidArgument {
                        field: "issues.title",
                        message: format!("must be without NUL, at most {MAX_FACT_BYTES} bytes"),
                    });
                }
                ("issues.id", id, &mut issues)
            }
            Annotation::Behaviour(name) => ("behaviours", name, &mut behaviours),
        };
        *count += 1;
        if *count > MAX_LINKS_PER_ANNOTATION {
            return Err(IngestError::InvalidArgument {
                field: if field == "behaviours" {
                    "behaviours"
                } else {
                    "issues"
                },
                message: format!("at most {MAX_LINKS_PER_ANNOTATION} per request"),
            });
        }
        if value.trim().is_empty() || value.contains('\0') || value.len() > MAX_LINK_VALUE_BYTES {
            return Err(IngestError::InvalidArgument {
                field,
                message: format!(
                    "must be a non-empty string without NUL, at most {MAX_LINK_VALUE_BYTES} bytes"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(annotations: &[Annotation]) -> Option<&'static str> {
        match check_annotations(annotations) {
            Err(IngestError::InvalidArgument { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn annotation_values_fit_the_index_bound_on_every_backend() {
        let at_limit = "b".repeat(MAX_LINK_VALUE_BYTES);
        assert_eq!(field_of(&[Annotation::Behaviour(at_limit.clone())]), None);
        assert_eq!(
            field_of(&[Annotation::Behaviour("b".repeat(3000))]),
            Some("behaviours")
        );
        assert_eq!(
            field_of(&[Annotation::Issue {
                id: "i".repeat(MAX_LINK_VALUE_BYTES + 1),
                title: None
            }]),
            Some("issues.id")
        );
        assert_eq!(
            field_of(&[Annotation::Issue {
                id: "i".into(),
                title: Some("a\0b".into())
            }]),
            Some("issues.title")
        );
    }

    #[test]
    fn annotation_link_counts_are_capped() {
        let behaviours: Vec<Annotation> = (0..MAX_LINKS_PER_ANNOTATION)
            .map(|i| Annotation::Behaviour(format!("b{i}")))
            .collect();
        assert_eq!(field_of(&behaviours), None);
        let mut too_many = behaviours.clone();
        too_many.push(Annotation::Behaviour("one more".into()));
        assert_eq!(field_of(&too_many), Some("behaviours"));
        let issues: Vec<Annotation> = (0..=MAX_LINKS_PER_ANNOTATION)
            .map(|i| Annotation::Issue {
                id: format!("i{i}"),
                title: None,
            })
            .collect();
        assert_eq!(field_of(&issues), Some("issues"));
    }
}
