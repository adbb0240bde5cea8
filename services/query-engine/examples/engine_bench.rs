//! Times the engine on a deterministic synthetic project.
//!
//! ```text
//! cargo run --release -p userlens-query-engine --example engine_bench -- \
//!     --traces 1000000 --users 50000 [--seed 7] [--runs 50]
//! ```
//!
//! The data has the shape of a real LLM application's traffic: Zipf-like user activity (top
//! user ≈ 8 % of traces), ≈ 8 % anonymous traces, sessions of 1–10 traces, 5–12 % errored
//! traces, 30 days, 1–3 models per trace, some tools, issues and behaviours.

use std::hint::black_box;
use std::time::{Duration, Instant};

use userlens_query_engine::{
    IssueLink, ModelUsage, OrderDirection, SessionsRequest, Snapshot, TimeRange, ToolUsage,
    TraceRow, UserOrder, UserOrderField, UsersRequest,
};

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 2026-11-24T13:17:00Z: "now", deliberately not aligned to a day.
const NOW: i64 = 1_795_958_220 * SECOND;

/// SplitMix64: tiny, deterministic, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn trace_id(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_le_bytes());
        id[8..].copy_from_slice(&self.next().to_le_bytes());
        id
    }
}

struct Args {
    traces: usize,
    users: usize,
    seed: u64,
    runs: usize,
    /// Only time the queries whose name contains this (for profiling one query).
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        traces: 1_000_000,
        users: 50_000,
        seed: 7,
        runs: 50,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--traces" => args.traces = number() as usize,
            "--users" => args.users = number() as usize,
            "--seed" => args.seed = number(),
            "--runs" => args.runs = number() as usize,
            "--only" => args.only = Some(value.clone()),
            other => {
                panic!("unknown flag {other} (use --traces, --users, --seed, --runs, --only)")
            }
        }
    }
    args
}

/// Generates the project: sessions of 1–10 traces, each owned by a Zipf-drawn user.
struct Generator {
    rng: Rng,
    /// Cumulative Zipf weights (s = 1) over user ranks.
    cumulative: Vec<f64>,
    user_ids: Vec<String>,
    emails: Vec<Option<String>>,
    next_session: u64,
}

const MODELS: [(&str, &str); 5] = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-sonnet-4", "anthropic"),
    ("gemini-2.5-pro", "google"),
    ("text-embedding-3-small", "openai"),
];
const TOOLS: [&str; 6] = [
    "web_search",
    "fetch_url",
    "sql_query",
    "send_email",
    "calculator",
    "retrieve_docs",
];
const BEHAVIOURS: [&str; 4] = ["frustrated", "asked_for_human", "praised", "retried"];

impl Generator {
    fn new(users: usize, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let mut cumulative = Vec::with_capacity(users);
        let mut total = 0.0;
        for rank in 0..users {
            total += 1.0 / (rank as f64 + 1.0);
            cumulative.push(total);
        }
        let user_ids = (0..users).map(|u| format!("user-{u:06}")).collect();
        let emails = (0..users)
            .map(|u| rng.chance(0.7).then(|| format!("person{u}@example.com")))
            .collect();
        Self {
            rng,
            cumulative,
            user_ids,
            emails,
            next_session: 0,
        }
    }

    fn zipf_user(&mut self) -> usize {
        let total = *self.cumulative.last().expect("at least one user");
        let x = self.rng.unit() * total;
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.cumulative.len() - 1)
    }

    /// One session's traces, starting somewhere in `[from, to)`; `user: None` draws one.
    fn session(&mut self, user: Option<usize>, from: i64, to: i64, out: &mut Vec<TraceRow>) {
        let anonymous = user.is_none() && self.rng.chance(0.08);
        let traces = if user.is_some() {
            self.rng.range(1, 6)
        } else {
            self.rng.range(1, 11)
        };
        let user = user.unwrap_or_else(|| self.zipf_user());
        let session_id = format!("sess-{:08x}", self.next_session);
        self.next_session += 1;
        let error_rate = 0.05 + 0.07 * self.rng.unit();
        let mut t = self.rng.range(from, to);
        for _ in 0..traces {
            let row = self.trace(t, anonymous, user, &session_id, error_rate);
            out.push(row);
            t += self.rng.range(5 * SECOND, 5 * MINUTE);
        }
    }

    fn trace(
        &mut self,
        start: i64,
        anonymous: bool,
        user: usize,
        session_id: &str,
        error_rate: f64,
    ) -> TraceRow {
        let rng = &mut self.rng;
        let mut models = Vec::new();
        for _ in 0..rng.range(1, 4) {
            let (model, provider) = MODELS[rng.range(0, MODELS.len() as i64) as usize];
            let input = rng.range(50, 4_000);
            let output = rng.range(10, 1_500);
            models.push(ModelUsage {
                model: Some(model.to_owned()),
                provider: Some(provider.to_owned()),
                calls: rng.range(1, 3),
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: input / rng.range(2, 10),
                cost_nano: input * 2_500 + output * 10_000,
            });
        }
        models.sort_by(|a, b| (&a.model, &a.provider).cmp(&(&b.model, &b.provider)));
        models.dedup_by(|a, b| {
            if (&a.model, &a.provider) == (&b.model, &b.provider) {
                b.calls += a.calls;
                b.input_tokens += a.input_tokens;
                b.output_tokens += a.output_tokens;
                b.cached_input_tokens += a.cached_input_tokens;
                b.cost_nano += a.cost_nano;
                true
            } else {
                false
            }
        });
        let errored = rng.chance(error_rate);
        let mut tools = Vec::new();
        for _ in 0..rng.range(0, 3) {
            tools.push(ToolUsage {
                tool: TOOLS[rng.range(0, TOOLS.len() as i64) as usize].to_owned(),
                calls: 1,
                errors: i64::from(errored && rng.chance(0.5)),
            });
        }
        tools.sort_by(|a, b| a.tool.cmp(&b.tool));
        tools.dedup_by(|a, b| {
            if a.tool == b.tool {
                b.calls += a.calls;
                b.errors += a.errors;
                true
            } else {
                false
            }
        });
        let issues = if errored && rng.chance(0.3) {
            let n = rng.range(0, 40);
            vec![IssueLink {
                id: format!("issue-{n}"),
                title: rng.chance(0.5).then(|| format!("Issue number {n}")),
            }]
        } else {
            Vec::new()
        };
        let behaviours = if rng.chance(0.1) {
            vec![BEHAVIOURS[rng.range(0, BEHAVIOURS.len() as i64) as usize].to_owned()]
        } else {
            Vec::new()
        };
        let input_tokens = models.iter().map(|m| m.input_tokens).sum();
        let output_tokens = models.iter().map(|m| m.output_tokens).sum();
        let cached_input_tokens = models.iter().map(|m| m.cached_input_tokens).sum();
        let cost_nano = models.iter().map(|m| m.cost_nano).sum();
        let email = if anonymous || !rng.chance(0.6) {
            None
        } else {
            self.emails[user].clone()
        };
        TraceRow {
            trace_id: self.rng.trace_id(),
            start_ns: start,
            end_ns: start + self.rng.range(200 * 1_000_000, 40 * SECOND),
            user_id: (!anonymous).then(|| self.user_ids[user].clone()),
            email,
            session_id: session_id.to_owned(),
            errored,
            cost_nano,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            tool_calls: tools.iter().map(|t| t.calls).sum(),
            models,
            tools,
            issues,
            behaviours,
        }
    }

    /// `count` traces; with `every_user`, each user first gets one session of 1–5 traces, so
    /// that the long tail is present (median user ≈ 3 traces), then sessions go to Zipf-drawn
    /// users.
    fn traces(&mut self, count: usize, every_user: bool, from: i64, to: i64) -> Vec<TraceRow> {
        let mut out = Vec::with_capacity(count + 10);
        if every_user {
            for user in 0..self.user_ids.len() {
                if out.len() >= count {
                    break;
                }
                self.session(Some(user), from, to, &mut out);
            }
        }
        while out.len() < count {
            self.session(None, from, to, &mut out);
        }
        out.truncate(count);
        out
    }
}

struct Timing {
    name: String,
    samples: Vec<Duration>,
}

impl Timing {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i].as_secs_f64() * 1e3
    }

    fn print(&self) {
        println!(
            "{:<44} p50 {:>8.2} ms   p95 {:>8.2} ms   p99 {:>8.2} ms",
            self.name,
            self.percentile(0.50),
            self.percentile(0.95),
            self.percentile(0.99)
        );
    }
}

struct Bench {
    runs: usize,
    only: Option<String>,
}

impl Bench {
    fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| name.contains(only))
    }

    fn time<T>(&self, name: &str, mut f: impl FnMut() -> T) {
        if !self.wants(name) {
            return;
        }
        black_box(f());
        let samples = (0..self.runs)
            .map(|_| {
                let started = Instant::now();
                black_box(f());
                started.elapsed()
            })
            .collect();
        Timing {
            name: name.to_owned(),
            samples,
        }
        .print();
    }
}

/// The same trace with a later end, another error flag and a higher cost.
fn changed(row: &TraceRow) -> TraceRow {
    let mut row = row.clone();
    row.end_ns += SECOND;
    row.errored = !row.errored;
    row.cost_nano += 1_000;
    row
}

fn users_request(range: TimeRange, field: UserOrderField) -> UsersRequest {
    UsersRequest {
        order: UserOrder::new(field, OrderDirection::Desc),
        first: 50,
        trend_buckets: vec![14],
        ..UsersRequest::new(range)
    }
}

fn main() {
    let args = parse_args();
    println!(
        "engine_bench: {} traces, {} users, seed {}, {} runs per query",
        args.traces, args.users, args.seed, args.runs
    );
    let mut generator = Generator::new(args.users, args.seed);
    let generated = Instant::now();
    let rows = generator.traces(args.traces, true, NOW - 30 * DAY, NOW - 10 * MINUTE);
    println!(
        "generated in {:.0} ms",
        generated.elapsed().as_secs_f64() * 1e3
    );

    // Every 20th trace, kept to replace later: changes spread over the whole range.
    let originals: Vec<TraceRow> = rows.iter().step_by(20).cloned().collect();
    let built = Instant::now();
    let mut snapshot = Snapshot::new();
    snapshot.upsert(rows);
    println!(
        "built snapshot of {} traces from unsorted rows in {:.0} ms",
        snapshot.len(),
        built.elapsed().as_secs_f64() * 1e3
    );
    let bytes = snapshot.memory_bytes();
    println!(
        "memory estimate: {:.1} MB ({:.0} bytes/trace)",
        bytes as f64 / 1e6,
        bytes as f64 / snapshot.len().max(1) as f64
    );

    // 30 days with unaligned ends, as the page asks by default.
    let month = TimeRange::new(NOW - 30 * DAY, NOW);
    let day = TimeRange::new(NOW - DAY, NOW);
    let heaviest = generator.user_ids[0].clone();
    let runs = args.runs;

    let overview = snapshot.overview(month).expect("valid range");
    println!(
        "30d: {} traces, {} users, {} sessions, {} buckets of {} s",
        overview.traces,
        overview.unique_users,
        overview.sessions,
        overview.histogram.buckets.len(),
        overview.histogram.bucket_seconds
    );
    let detail = snapshot
        .user_detail(&heaviest, &[30], NOW)
        .expect("valid days")
        .expect("heaviest user exists");
    println!(
        "heaviest user {heaviest}: {} traces, {} sessions",
        detail.traces, detail.sessions
    );
    println!();

    let bench = Bench {
        runs,
        only: args.only.clone(),
    };
    let s = &snapshot;
    bench.time("overview 30d", || s.overview(month));
    for field in [
        UserOrderField::CostSum,
        UserOrderField::LastSeen,
        UserOrderField::CostMedian,
    ] {
        let request = users_request(month, field);
        bench.time(&format!("users 30d {field:?} first 50"), || {
            s.users(&request)
        });
    }
    let request = users_request(month, UserOrderField::CostSum);
    bench.time("users page 30d (overview + users COST_SUM)", || {
        (s.overview(month), s.users(&request))
    });
    let request = users_request(day, UserOrderField::LastSeen);
    bench.time("24h overview + users LAST_SEEN", || {
        (s.overview(day), s.users(&request))
    });
    bench.time("user_detail heaviest (activity 30d)", || {
        s.user_detail(&heaviest, &[30], NOW)
    });
    bench.time("breakdowns heaviest, lifetime", || {
        s.breakdowns(&heaviest, None)
    });
    let sessions = SessionsRequest::new(heaviest.clone());
    bench.time("sessions heaviest first 50", || s.sessions(&sessions));
    if !bench.wants("upsert 10k") {
        return;
    }

    // Upserts of 10k rows per run: half replace existing traces, half are new.
    // Recent: traces of the last 6 hours, the usual shape of late spans.
    let mut recent = Generator::new(args.users, args.seed ^ 0x5eed);
    let pool = recent.traces(5_000 * (runs + 1), false, NOW - 6 * HOUR, NOW);
    snapshot.upsert(pool[..5_000].to_vec());
    // Spread: changes all over the 30 days (late annotations, re-derived traces).
    let mut spread = Generator::new(args.users, args.seed ^ 0xc4a1);
    let mut upsert_samples = Vec::new();
    let mut spread_samples = Vec::new();
    for run in 0..runs {
        let mut batch: Vec<TraceRow> = pool[5_000 * (run + 1)..5_000 * (run + 2)].to_vec();
        batch.extend(pool[5_000 * run..5_000 * (run + 1)].iter().map(changed));
        let started = Instant::now();
        snapshot.upsert(batch);
        upsert_samples.push(started.elapsed());

        let mut batch = spread.traces(5_000, false, NOW - 30 * DAY, NOW);
        batch.extend(
            originals
                .iter()
                .skip(run % 7)
                .step_by(7)
                .take(5_000)
                .map(changed),
        );
        let started = Instant::now();
        snapshot.upsert(batch);
        spread_samples.push(started.elapsed());
    }
    Timing {
        name: "upsert 10k (5k changed + 5k new, recent)".into(),
        samples: upsert_samples,
    }
    .print();
    Timing {
        name: "upsert 10k (5k changed + 5k new, 30 days)".into(),
        samples: spread_samples,
    }
    .print();
    println!(
        "after upserts: {} traces, memory estimate {:.1} MB",
        snapshot.len(),
        snapshot.memory_bytes() as f64 / 1e6
    );
}
