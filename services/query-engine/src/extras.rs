//! Per-trace facts only one user's queries read (models, tools, issues, behaviours), packed
//! as varints in one byte arena: ≈ 20–40 bytes per trace instead of four boxed slices of
//! fixed-width structs (≈ 150 bytes), and no per-trace heap allocation.

use crate::intern::NO_ID;

/// Leaf LLM calls of one trace with one (model, provider) key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelCalls {
    /// Index into the snapshot's (model, provider) key table.
    pub key: u32,
    pub calls: i64,
    pub input: i64,
    pub output: i64,
    pub cached: i64,
    pub cost: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ToolCalls {
    pub tool: u32,
    pub calls: i64,
    pub errors: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IssueRef {
    pub issue: u32,
    /// `NO_ID` when this trace gives no title.
    pub title: u32,
}

/// One trace's decoded record; reused across traces to avoid allocating per trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extras {
    pub models: Vec<ModelCalls>,
    pub tools: Vec<ToolCalls>,
    pub issues: Vec<IssueRef>,
    pub behaviours: Vec<u32>,
}

impl Extras {
    pub(crate) fn clear(&mut self) {
        self.models.clear();
        self.tools.clear();
        self.issues.clear();
        self.behaviours.clear();
    }
}

/// Append-only arena; a replaced record becomes garbage and is reclaimed by `compact`.
#[derive(Debug, Default, Clone)]
pub(crate) struct ExtrasArena {
    bytes: Vec<u8>,
    garbage: usize,
}

impl ExtrasArena {
    pub(crate) fn append(&mut self, extras: &Extras) -> u64 {
        let offset = self.bytes.len() as u64;
        let out = &mut self.bytes;
        put_len(out, extras.models.len());
        for m in &extras.models {
            put_u64(out, u64::from(m.key));
            put_i64(out, m.calls);
            put_i64(out, m.input);
            put_i64(out, m.output);
            put_i64(out, m.cached);
            put_i64(out, m.cost);
        }
        put_len(out, extras.tools.len());
        for t in &extras.tools {
            put_u64(out, u64::from(t.tool));
            put_i64(out, t.calls);
            put_i64(out, t.errors);
        }
        put_len(out, extras.issues.len());
        for i in &extras.issues {
            put_u64(out, u64::from(i.issue));
            put_u64(
                out,
                if i.title == NO_ID {
                    0
                } else {
                    u64::from(i.title) + 1
                },
            );
        }
        put_len(out, extras.behaviours.len());
        for &b in &extras.behaviours {
            put_u64(out, u64::from(b));
        }
        offset
    }

    /// Decodes the record at `offset` into `out` and returns the record's length in bytes.
    pub(crate) fn decode(&self, offset: u64, out: &mut Extras) -> usize {
        out.clear();
        let start = offset as usize;
        let mut r = Reader {
            bytes: &self.bytes,
            at: start,
        };
        for _ in 0..r.len() {
            out.models.push(ModelCalls {
                key: r.id(),
                calls: r.i64(),
                input: r.i64(),
                output: r.i64(),
                cached: r.i64(),
                cost: r.i64(),
            });
        }
        for _ in 0..r.len() {
            out.tools.push(ToolCalls {
                tool: r.id(),
                calls: r.i64(),
                errors: r.i64(),
            });
        }
        for _ in 0..r.len() {
            let issue = r.id();
            let title = match r.u64() {
                0 => NO_ID,
                t => u32::try_from(t - 1).expect("titles are encoded from u32 ids"),
            };
            out.issues.push(IssueRef { issue, title });
        }
        for _ in 0..r.len() {
            out.behaviours.push(r.id());
        }
        r.at - start
    }

    pub(crate) fn retire(&mut self, record_len: usize) {
        self.garbage += record_len;
    }

    pub(crate) fn needs_compaction(&self) -> bool {
        self.garbage > 1 << 16 && self.garbage * 2 > self.bytes.len()
    }

    /// Rewrites the live records contiguously and updates their offsets.
    pub(crate) fn compact(&mut self, offsets: &mut [u64]) {
        let mut live = Vec::with_capacity(self.bytes.len() - self.garbage);
        let mut scratch = Extras::default();
        for offset in offsets.iter_mut() {
            let len = self.decode(*offset, &mut scratch);
            let start = *offset as usize;
            *offset = live.len() as u64;
            live.extend_from_slice(&self.bytes[start..start + len]);
        }
        self.bytes = live;
        self.garbage = 0;
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.bytes.capacity()
    }
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    put_u64(out, len as u64);
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads records this module wrote; a malformed record is an internal bug, so it panics.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.bytes[self.at];
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }

    fn len(&mut self) -> usize {
        self.u64() as usize
    }

    fn id(&mut self) -> u32 {
        u32::try_from(self.u64()).expect("ids are encoded from u32")
    }

    fn i64(&mut self) -> i64 {
        let v = self.u64();
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_compact() {
        let mut arena = ExtrasArena::default();
        let a = Extras {
            models: vec![ModelCalls {
                key: 3,
                calls: 2,
                input: i64::MAX,
                output: 0,
                cached: -1,
                cost: i64::MIN,
            }],
            tools: vec![ToolCalls {
                tool: 9,
                calls: 4,
                errors: 1,
            }],
            issues: vec![
                IssueRef {
                    issue: 1,
                    title: NO_ID,
                },
                IssueRef { issue: 2, title: 0 },
            ],
            behaviours: vec![u32::MAX - 1, 5],
        };
        let b = Extras::default();
        let mut offsets = vec![arena.append(&a), arena.append(&b), arena.append(&a)];
        let mut out = Extras::default();
        let len = arena.decode(offsets[0], &mut out);
        assert_eq!(out, a);
        arena.retire(len);
        offsets.remove(0);
        arena.compact(&mut offsets);
        arena.decode(offsets[0], &mut out);
        assert_eq!(out, b);
        arena.decode(offsets[1], &mut out);
        assert_eq!(out, a);
        assert_eq!(offsets[0], 0);
    }
}
