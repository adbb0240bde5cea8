//! The memory an OTLP/JSON body takes once decoded, estimated by one scan of its bytes
//! before it is decoded (the JSON counterpart of `userlens_proto::decoded_size`): `{}` is a
//! whole span in 2 bytes.
//!
//! Every element of an array costs the `size_of` of the type its key holds in OTLP JSON
//! (`spans` → `Span`, `attributes` → `KeyValue`, …; an unknown key the largest of them),
//! every string its length. Objects outside arrays are inline in their parent. The scan
//! also counts what the body takes as a `serde_json::Value` tree, which the quoted-doubles
//! fallback of `http::decode_json` builds.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};

/// What a JSON body would take in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonDecodedSize {
    /// As the OTLP request structs.
    pub typed_bytes: usize,
    /// As a `serde_json::Value` tree.
    pub value_tree_bytes: usize,
}

/// A JSON value in a `serde_json::Value` tree, with its share of its parent's map entry.
const VALUE_TREE_NODE_BYTES: usize = size_of::<serde_json::Value>() + 48;

/// Deeper than serde_json's recursion limit (128) does not decode; the scan stops there.
const MAX_DEPTH: usize = 160;

fn element_size(key: &[u8]) -> usize {
    match key {
        b"resourceSpans" | b"resource_spans" => size_of::<ResourceSpans>(),
        b"scopeSpans" | b"scope_spans" => size_of::<ScopeSpans>(),
        b"spans" => size_of::<Span>(),
        b"attributes" => size_of::<KeyValue>(),
        b"events" => size_of::<span::Event>(),
        b"links" => size_of::<span::Link>(),
        b"values" => size_of::<KeyValue>().max(size_of::<AnyValue>()),
        b"entityRefs" | b"entity_refs" => size_of::<EntityRef>(),
        b"idKeys" | b"id_keys" | b"descriptionKeys" | b"description_keys" => size_of::<String>(),
        _ => LARGEST_ELEMENT,
    }
}

const LARGEST_ELEMENT: usize = {
    let sizes = [
        size_of::<ResourceSpans>(),
        size_of::<ScopeSpans>(),
        size_of::<Span>(),
        size_of::<KeyValue>(),
        size_of::<span::Event>(),
        size_of::<span::Link>(),
        size_of::<AnyValue>(),
        size_of::<EntityRef>(),
    ];
    let mut largest = 0;
    let mut i = 0;
    while i < sizes.len() {
        if sizes[i] > largest {
            largest = sizes[i];
        }
        i += 1;
    }
    largest
};

enum Container {
    /// An object; `expecting_key` right after `{` or `,`; `key` the last key read.
    Object {
        expecting_key: bool,
        key: (usize, usize),
    },
    /// An array whose elements cost `element` bytes each.
    Array { element: usize },
}

/// Scans `body`; None when it nests deeper than any decodable body.
pub fn estimate(body: &[u8]) -> Option<JsonDecodedSize> {
    let mut size = JsonDecodedSize {
        typed_bytes: size_of::<ExportTraceServiceRequest>(),
        value_tree_bytes: 0,
    };
    let mut stack: Vec<Container> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let byte = body[i];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {
                i += 1;
                continue;
            }
            b',' => {
                if let Some(Container::Object { expecting_key, .. }) = stack.last_mut() {
                    *expecting_key = true;
                }
                i += 1;
                continue;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
                continue;
            }
            _ => {}
        }
        // A string or the start of a value.
        if byte == b'"' {
            let start = i + 1;
            let mut end = start;
            while end < body.len() && body[end] != b'"' {
                end += if body[end] == b'\\' { 2 } else { 1 };
            }
            let end = end.min(body.len());
            i = end + 1;
            if let Some(Container::Object { expecting_key, key }) = stack.last_mut()
                && *expecting_key
            {
                *expecting_key = false;
                *key = (start, end);
                size.value_tree_bytes += end - start;
                continue;
            }
            value_starts(&stack, &mut size);
            size.typed_bytes += end - start;
            size.value_tree_bytes += end - start;
            continue;
        }
        value_starts(&stack, &mut size);
        match byte {
            b'{' | b'[' => {
                if stack.len() >= MAX_DEPTH {
                    return None;
                }
                stack.push(if byte == b'{' {
                    Container::Object {
                        expecting_key: true,
                        key: (0, 0),
                    }
                } else {
                    let element = match stack.last() {
                        Some(Container::Object { key, .. }) => element_size(&body[key.0..key.1]),
                        _ => LARGEST_ELEMENT,
                    };
                    Container::Array { element }
                });
                i += 1;
            }
            _ => {
                // A number or a literal (its first byte is none of the delimiters handled
                // above, so the scan moves on): up to the next delimiter.
                i += 1;
                while i < body.len() && !b",]} \t\n\r:\"{[".contains(&body[i]) {
                    i += 1;
                }
            }
        }
    }
    Some(size)
}

/// A value starts: an array element costs its struct, every value a tree node.
fn value_starts(stack: &[Container], size: &mut JsonDecodedSize) {
    if let Some(Container::Array { element }) = stack.last() {
        size.typed_bytes += element;
    }
    size.value_tree_bytes += VALUE_TREE_NODE_BYTES;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_spans_cost_their_struct() {
        let spans = vec!["{}"; 1000].join(",");
        let body = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
        let size = estimate(body.as_bytes()).expect("scans");
        assert!(size.typed_bytes >= 1000 * size_of::<Span>());
        assert!(size.typed_bytes < 1001 * size_of::<Span>() + 1000);
    }

    #[test]
    fn strings_cost_their_length_and_keys_name_the_element_type() {
        let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"abcdef"}}]}}]}"#;
        let size = estimate(body.as_bytes()).expect("scans");
        assert_eq!(
            size.typed_bytes,
            size_of::<ExportTraceServiceRequest>()
                + size_of::<ResourceSpans>()
                + size_of::<KeyValue>()
                + "service.name".len()
                + "abcdef".len()
        );
    }

    #[test]
    fn numbers_count_as_tree_nodes() {
        let body = format!(r#"{{"unknown":[{}]}}"#, vec!["1"; 100].join(","));
        let size = estimate(body.as_bytes()).expect("scans");
        assert!(size.value_tree_bytes >= 100 * VALUE_TREE_NODE_BYTES);
        assert!(size.typed_bytes >= 100 * LARGEST_ELEMENT);
    }

    #[test]
    fn too_deep_nesting_is_refused() {
        let body = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(estimate(body.as_bytes()), None);
    }
}
