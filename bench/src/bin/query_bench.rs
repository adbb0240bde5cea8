//! Users-page query benchmark: loads N synthetic traces for M users through the real ingest
//! path (once; reruns reuse the project), then measures the users-query gRPC API and, for
//! comparison, one naive GROUP BY over the raw spans on the same database.
//!
//! cargo run --release -p userlens-bench --bin query_bench -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/userlens_bench \
//!     --redis-url redis://127.0.0.1:6379 --traces 1000000 --users 50000
//!
//! With `--gateway-binary target/release/userlens` it also starts `userlens gateway` as a
//! child process in front of the users-query server and times `GET /export/users.csv` of
//! every user, reading the gateway's resident memory from `/proc` during each export.

use std::future::Future;
use std::time::{Duration, Instant};

use clap::Parser;
use sea_orm::{ConnectionTrait, Statement};
use tokio::net::TcpListener;
use tonic::Request;
use tonic::transport::Channel;
use userlens_bench::{DATASET_END_NS, Percentiles, ensure_dataset, ms};
use userlens_datagen::DatasetSpec;
use userlens_proto::query::v1::users_query_service_client::UsersQueryServiceClient;
use userlens_proto::query::v1::{
    GetActiveUsersRequest, GetRetentionRequest, GetUserDetailRequest, GetUsersOverviewRequest,
    ListSessionsRequest, ListUsersRequest, OrderDirection, PeriodUnit, TimeRange, UserFilter,
    UserOrderField,
};
use userlens_storage::DatabaseSettings;
use userlens_users_query::ResultCache;
use userlens_users_query::convert::ns_to_timestamp as ts;

#[derive(Parser)]
struct Args {
    #[arg(long, env = "USERLENS_DATABASE_URL")]
    database_url: String,
    /// Redis for the cached figures; without it the in-process cache is used.
    #[arg(long)]
    redis_url: Option<String>,
    #[arg(long, default_value_t = 1_000_000)]
    traces: u64,
    #[arg(long, default_value_t = 50_000)]
    users: u64,
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Runs per measured query.
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Runs of the naive GROUP BY (slow at scale).
    #[arg(long, default_value_t = 3)]
    naive_runs: usize,
    /// Concurrent clients of the concurrency figures (0 skips them).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Page loads each concurrent client makes.
    #[arg(long, default_value_t = 40)]
    runs_per_client: usize,
    /// Skip the users-page, detail and sessions rows (and the concurrency figures): only the
    /// period, retention, active-users, filter and export figures.
    #[arg(long)]
    analytics_only: bool,
    /// A `userlens` binary: starts its gateway role for the CSV export figures.
    #[arg(long)]
    gateway_binary: Option<std::path::PathBuf>,
    /// Exports of every user timed through the gateway.
    #[arg(long, default_value_t = 5)]
    export_runs: usize,
}

const NS: i64 = 1_000_000_000;

fn range(from_ns: i64, to_ns: i64) -> Option<TimeRange> {
    Some(TimeRange {
        from: Some(ts(from_ns)),
        to: Some(ts(to_ns)),
    })
}

struct Client {
    inner: UsersQueryServiceClient<Channel>,
    key: String,
}

impl Client {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.key).parse().expect("ascii key"),
        );
        request
    }
}

async fn measure<F, Fut>(runs: usize, mut run: F) -> Percentiles
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        run(i).await;
        samples.push(started.elapsed());
    }
    Percentiles::of(samples)
}

/// Page loads of `clients` concurrent clients, each making `runs_per_client` loads one after
/// another: every load's latency, and the whole run's page loads per second.
async fn measure_concurrent<F, Fut>(
    clients: usize,
    runs_per_client: usize,
    run: F,
) -> (Percentiles, f64)
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let loads: Vec<Fut> = (0..runs_per_client).map(|i| run(client, i)).collect();
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(loads.len());
            for load in loads {
                let load_started = Instant::now();
                load.await;
                samples.push(load_started.elapsed());
            }
            samples
        });
    }
    let mut samples = Vec::with_capacity(clients * runs_per_client);
    while let Some(client_samples) = tasks.join_next().await {
        samples.extend(client_samples.expect("client task"));
    }
    let per_second = samples.len() as f64 / started.elapsed().as_secs_f64();
    (Percentiles::of(samples), per_second)
}

fn report_concurrent(name: &str, p: &Percentiles, per_second: f64) {
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {} | {per_second:.0} |",
        ms(p.p50),
        ms(p.p95),
        ms(p.p99),
        p.runs
    );
}

fn report(name: &str, p: &Percentiles) {
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {} |",
        ms(p.p50),
        ms(p.p95),
        ms(p.p99),
        p.runs
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let db = userlens_storage::connect(&DatabaseSettings::new(args.database_url.clone()))
        .await
        .expect("connect");
    userlens_storage::migrate(&db).await.expect("migrate");
    let spec = DatasetSpec::new(
        args.traces,
        args.users,
        args.days,
        args.seed,
        DATASET_END_NS,
    );
    let project = format!(
        "bench-{}-{}-{}-{}",
        args.traces, args.users, args.days, args.seed
    );
    let key = ensure_dataset(&db, &project, spec).await;

    let cache = match &args.redis_url {
        Some(url) => ResultCache::redis(url, &format!("userlens-bench-{}:", std::process::id()))
            .expect("redis"),
        None => ResultCache::in_process(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(userlens_users_query::serve(
        db.clone(),
        cache,
        listener,
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let client = Client {
        inner: UsersQueryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect to users-query")
            .max_decoding_message_size(64 * 1024 * 1024),
        key,
    };

    // A 30-day range with unaligned ends; each uncached run shifts its end by a few
    // nanoseconds so that no run finds a cached answer (the figures do not change).
    let from = DATASET_END_NS - 30 * 86_400 * NS + 7 * 3_600 * NS + 123;
    let to = DATASET_END_NS - 41 * NS;
    let overview = |i: usize| GetUsersOverviewRequest {
        range: range(from, to + i as i64),
    };

    println!();
    println!(
        "backend: {}",
        if args.database_url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "dataset: {} traces, {} users, {} days, seed {}",
        args.traces, args.users, args.days, args.seed
    );
    let started = Instant::now();
    let mut cold = client.inner.clone();
    cold.get_users_overview(client.request(overview(1_000_000)))
        .await
        .expect("first query");
    println!(
        "cold start (snapshot loaded from the database, then one overview): {:.0} ms",
        ms(started.elapsed())
    );
    println!();
    println!("| query | p50 ms | p95 ms | p99 ms | runs |");
    println!("|---|---|---|---|---|");

    if !args.analytics_only {
        page_rows(&args, &client, addr, from, to).await;
        // The design this replaces: one GROUP BY over the raw spans per page load.
        let backend = db.get_database_backend();
        let naive_sql = match backend {
            sea_orm::DatabaseBackend::Postgres => {
                "WITH t AS (
                   SELECT trace_id, min(start_ns) AS started, max(user_id) AS user_id,
                          coalesce(max(session_id), encode(trace_id, 'hex')) AS session_id,
                          bool_or(status_code = 2) AS errored, sum(coalesce(cost_nano, 0)) AS cost
                   FROM spans WHERE project_id = (SELECT id FROM projects WHERE name = $1)
                   GROUP BY trace_id)
                 SELECT user_id, count(*) AS traces, count(DISTINCT session_id) AS sessions,
                        count(DISTINCT session_id) FILTER (WHERE errored) AS errored_sessions,
                        sum(cost) AS cost, max(started) AS last_seen, count(*) OVER () AS total
                 FROM t WHERE started >= $2 AND started < $3 AND user_id IS NOT NULL
                 GROUP BY user_id ORDER BY cost DESC, user_id LIMIT 50"
            }
            _ => {
                "WITH t AS (
                   SELECT trace_id, min(start_ns) AS started, max(user_id) AS user_id,
                          coalesce(max(session_id), hex(trace_id)) AS session_id,
                          max(status_code = 2) AS errored, sum(coalesce(cost_nano, 0)) AS cost
                   FROM spans WHERE project_id = (SELECT id FROM projects WHERE name = ?)
                   GROUP BY trace_id)
                 SELECT user_id, count(*) AS traces, count(DISTINCT session_id) AS sessions,
                        count(DISTINCT CASE WHEN errored THEN session_id END) AS errored_sessions,
                        sum(cost) AS cost, max(started) AS last_seen, count(*) OVER () AS total
                 FROM t WHERE started >= ? AND started < ? AND user_id IS NOT NULL
                 GROUP BY user_id ORDER BY cost DESC, user_id LIMIT 50"
            }
        };
        if args.naive_runs > 0 {
            let p = measure(args.naive_runs, |_| {
                let statement = Statement::from_sql_and_values(
                    backend,
                    naive_sql,
                    [project.clone().into(), from.into(), to.into()],
                );
                let db = db.clone();
                async move {
                    db.query_all_raw(statement).await.expect("naive query");
                }
            })
            .await;
            report(
                "naive: one GROUP BY over raw spans (users top 50 by cost, no medians, no overview)",
                &p,
            );
        }
    }
    analytics_rows(&args, &client, from, to).await;
    if let Some(binary) = &args.gateway_binary {
        export_rows(binary, addr, &client.key, args.export_runs).await;
    }

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

async fn page_rows(args: &Args, client: &Client, addr: std::net::SocketAddr, from: i64, to: i64) {
    let overview = |i: usize| GetUsersOverviewRequest {
        range: range(from, to + i as i64),
    };
    let users = |i: usize, field: UserOrderField| ListUsersRequest {
        range: range(from, to + i as i64),
        order_field: field as i32,
        order_direction: OrderDirection::Desc as i32,
        first: Some(50),
        ..Default::default()
    };
    for (name, field) in [
        (
            "users page uncached: overview + users COST_SUM DESC first 50, concurrently",
            UserOrderField::CostSum,
        ),
        (
            "users page uncached: overview + users LAST_SEEN DESC first 50, concurrently",
            UserOrderField::LastSeen,
        ),
    ] {
        let p = measure(args.runs, |i| {
            let (mut a, mut b) = (client.inner.clone(), client.inner.clone());
            let (o, u) = (
                client.request(overview(i + 1)),
                client.request(users(i + 1, field)),
            );
            async move {
                let (o, u) = tokio::join!(a.get_users_overview(o), b.list_users(u));
                o.expect("overview");
                u.expect("users");
            }
        })
        .await;
        report(name, &p);
    }
    for (name, field) in [
        (
            "users page cached: overview + users COST_SUM DESC first 50",
            UserOrderField::CostSum,
        ),
        (
            "users page cached: overview + users LAST_SEEN DESC first 50",
            UserOrderField::LastSeen,
        ),
    ] {
        let p = measure(args.runs + 1, |_| {
            let (mut a, mut b) = (client.inner.clone(), client.inner.clone());
            let (o, u) = (client.request(overview(0)), client.request(users(0, field)));
            async move {
                let (o, u) = tokio::join!(a.get_users_overview(o), b.list_users(u));
                o.expect("overview");
                u.expect("users");
            }
        })
        .await;
        report(name, &p);
    }
    for (name, user) in [
        ("userDetail uncached, heaviest user", "user-00000"),
        ("userDetail uncached, a median user", "user-25000"),
    ] {
        let p = measure(args.runs, |i| {
            let mut c = client.inner.clone();
            let request = client.request(GetUserDetailRequest {
                user_id: user.into(),
                activity_days: vec![30 + (i % 300) as u32],
            });
            async move {
                c.get_user_detail(request).await.expect("detail");
            }
        })
        .await;
        report(name, &p);
    }
    let p = measure(args.runs, |i| {
        let mut c = client.inner.clone();
        let request = client.request(ListSessionsRequest {
            user_id: "user-00000".into(),
            range: range(from, to + i as i64),
            first: Some(50),
            ..Default::default()
        });
        async move {
            c.list_sessions(request).await.expect("sessions");
        }
    })
    .await;
    report("sessions uncached, heaviest user, first 50", &p);

    if args.clients > 0 {
        // One connection shared by every client (as the gateway holds one channel), then one
        // connection per client: the difference is what the shared connection costs.
        let mut per_client = Vec::with_capacity(args.clients);
        for _ in 0..args.clients {
            per_client.push(
                UsersQueryServiceClient::connect(format!("http://{addr}"))
                    .await
                    .expect("connect to users-query")
                    .max_decoding_message_size(64 * 1024 * 1024),
            );
        }
        println!();
        println!(
            "{} concurrent clients, {} page loads each (overview + users COST_SUM DESC first 50, \
             concurrently, per load):",
            args.clients, args.runs_per_client
        );
        println!();
        println!("| query | p50 ms | p95 ms | p99 ms | loads | loads/s |");
        println!("|---|---|---|---|---|---|");
        // Uncached loads use range ends no earlier run used.
        let mut offset = 2 * args.runs + 10;
        for (name, cached, shared) in [
            ("users page uncached, one shared connection", false, true),
            (
                "users page uncached, one connection per client",
                false,
                false,
            ),
            ("users page cached, one shared connection", true, true),
            ("users page cached, one connection per client", true, false),
        ] {
            let base = offset;
            if !cached {
                offset += args.clients * args.runs_per_client;
            }
            let runs_per_client = args.runs_per_client;
            let (p, per_second) = measure_concurrent(args.clients, runs_per_client, |c, i| {
                let channel = if shared {
                    client.inner.clone()
                } else {
                    per_client[c].clone()
                };
                let (mut a, mut b) = (channel.clone(), channel);
                let n = if cached {
                    0
                } else {
                    base + c * runs_per_client + i
                };
                let (o, u) = (
                    client.request(overview(n)),
                    client.request(users(n, UserOrderField::CostSum)),
                );
                async move {
                    let (o, u) = tokio::join!(a.get_users_overview(o), b.list_users(u));
                    o.expect("overview");
                    u.expect("users");
                }
            })
            .await;
            report_concurrent(name, &p, per_second);
        }
    }
}

/// Uncached p50/p95 of the period-comparison, retention, active-users and filter queries
/// (SPEC §4.8): each run shifts its range end by a nanosecond, so no run finds a cached answer.
async fn analytics_rows(args: &Args, client: &Client, from: i64, to: i64) {
    let runs = args.runs;
    let p = measure(runs, |i| {
        let mut c = client.inner.clone();
        let request = client.request(GetUsersOverviewRequest {
            range: range(from, to + 2_000_000 + i as i64),
        });
        async move {
            c.get_previous_period_overview(request)
                .await
                .expect("previous period overview");
        }
    })
    .await;
    report("previous period overview uncached, 30d", &p);

    let users = |i: usize, field: UserOrderField, filter: Option<UserFilter>, previous: bool| {
        client.request(ListUsersRequest {
            range: range(from, to + 3_000_000 + i as i64),
            order_field: field as i32,
            order_direction: OrderDirection::Desc as i32,
            first: Some(50),
            filter,
            previous_period: previous,
            ..Default::default()
        })
    };
    for (name, field, previous) in [
        (
            "users (no filter, no previousPeriod) uncached, 30d, COST_SUM DESC first 50, for comparison",
            UserOrderField::CostSum,
            false,
        ),
        (
            "users with previousPeriod uncached, 30d, COST_SUM DESC first 50",
            UserOrderField::CostSum,
            true,
        ),
        (
            "users with previousPeriod uncached, 30d, LAST_SEEN DESC first 50",
            UserOrderField::LastSeen,
            true,
        ),
    ] {
        let p = measure(runs, |i| {
            let mut c = client.inner.clone();
            let request = users(i + if previous { 0 } else { 500 }, field, None, previous);
            async move {
                c.list_users(request).await.expect("users");
            }
        })
        .await;
        report(name, &p);
    }

    // Twelve weeks ending at the dataset's end (its traces cover the last 30 days of them).
    let weeks_from = DATASET_END_NS - 84 * 86_400 * NS;
    for (name, cohort, periods) in [
        (
            "retention uncached, 12 weeks, DAY cohorts, 30 periods",
            PeriodUnit::Day,
            30,
        ),
        (
            "retention uncached, 12 weeks, WEEK cohorts, 12 periods",
            PeriodUnit::Week,
            12,
        ),
    ] {
        let p = measure(runs, |i| {
            let mut c = client.inner.clone();
            let request = client.request(GetRetentionRequest {
                range: range(weeks_from, DATASET_END_NS + 4_000_000 + i as i64),
                cohort: cohort as i32,
                periods: Some(periods),
            });
            async move {
                c.get_retention(request).await.expect("retention");
            }
        })
        .await;
        report(name, &p);
    }

    for (name, window) in [
        ("active users uncached, 30d, DAY windows", PeriodUnit::Day),
        ("active users uncached, 30d, WEEK windows", PeriodUnit::Week),
        (
            "active users uncached, 30d, MONTH windows",
            PeriodUnit::Month,
        ),
    ] {
        let p = measure(runs, |i| {
            let mut c = client.inner.clone();
            let request = client.request(GetActiveUsersRequest {
                range: range(from, to + 5_000_000 + i as i64),
                window: window as i32,
            });
            async move {
                c.get_active_users(request).await.expect("active users");
            }
        })
        .await;
        report(name, &p);
    }

    let strings = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
    let filters: Vec<(&str, UserFilter)> = vec![
        (
            "minCostSum 0.05",
            UserFilter {
                min_cost_sum: Some(0.05),
                ..Default::default()
            },
        ),
        (
            "minCostSum 0.01 + maxCostSum 0.02",
            UserFilter {
                min_cost_sum: Some(0.01),
                max_cost_sum: Some(0.02),
                ..Default::default()
            },
        ),
        (
            "erroredOnly",
            UserFilter {
                errored_only: true,
                ..Default::default()
            },
        ),
        (
            "models [claude-haiku-3.5]",
            UserFilter {
                models: strings(&["claude-haiku-3.5"]),
                ..Default::default()
            },
        ),
        (
            "providers [gcp.gemini]",
            UserFilter {
                providers: strings(&["gcp.gemini"]),
                ..Default::default()
            },
        ),
        (
            "tools [calculator]",
            UserFilter {
                tools: strings(&["calculator"]),
                ..Default::default()
            },
        ),
        (
            "issueId iss-slow-search",
            UserFilter {
                issue_id: Some("iss-slow-search".into()),
                ..Default::default()
            },
        ),
        (
            "behaviour frustrated",
            UserFilter {
                behaviour: Some("frustrated".into()),
                ..Default::default()
            },
        ),
        (
            "hasEmail true",
            UserFilter {
                has_email: Some(true),
                ..Default::default()
            },
        ),
    ];
    let mut matched = Vec::new();
    for (name, filter) in filters {
        let last_total = std::cell::Cell::new(0);
        let p = measure(runs, |i| {
            let mut c = client.inner.clone();
            let request = users(
                i + 1_000,
                UserOrderField::CostSum,
                Some(filter.clone()),
                false,
            );
            let total = &last_total;
            async move {
                total.set(
                    c.list_users(request)
                        .await
                        .expect("filtered users")
                        .into_inner()
                        .total_count,
                );
            }
        })
        .await;
        report(
            &format!("users filter {name} uncached, 30d, COST_SUM DESC first 50"),
            &p,
        );
        matched.push((name, last_total.get()));
    }
    println!();
    for (name, total) in matched {
        println!("users filter {name}: {total} users match");
    }
}

/// The gateway's resident and peak resident memory (KiB), from `/proc/<pid>/status`.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Times `GET /export/users.csv` of every user through a `userlens gateway` child process,
/// and reports the gateway's peak resident memory before, during and after.
async fn export_rows(
    binary: &std::path::Path,
    query_addr: std::net::SocketAddr,
    key: &str,
    runs: usize,
) {
    use tokio::io::AsyncBufReadExt;

    let mut child = tokio::process::Command::new(binary)
        .arg("gateway")
        .env("USERLENS_GRAPHQL_ADDR", "127.0.0.1:0")
        .env("USERLENS_QUERY_URL", format!("http://{query_addr}"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start userlens gateway");
    let pid = child.id().expect("gateway pid");
    let stderr = child.stderr.take().expect("gateway stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .expect("gateway log")
            .expect("the gateway announces its address before exiting");
        if let Some(at) = line
            .find("listener=graphql addr=")
            .or_else(|| line.find("listener=\"graphql\" addr="))
        {
            let rest = &line[at..];
            let addr = rest
                .split("addr=")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
                .expect("an address");
            break addr.to_owned();
        }
    };
    // Keep draining the log so the gateway never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = reqwest::Client::new();
    let export = |query: String| {
        let http = http.clone();
        let url = format!("http://{addr}/export/users.csv?{query}");
        let key = key.to_owned();
        async move {
            let mut response = http
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("export request");
            assert_eq!(response.status(), 200, "export status");
            let (mut bytes, mut rows, mut peak_rss) = (0u64, 0u64, 0u64);
            while let Some(chunk) = response.chunk().await.expect("export body") {
                bytes += chunk.len() as u64;
                rows += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                peak_rss = peak_rss.max(memory_kib(pid).0);
            }
            (bytes, rows.saturating_sub(1), peak_rss)
        }
    };
    let rfc3339 = |ns: i64| {
        let t = ts(ns);
        let (days, secs) = (t.seconds.div_euclid(86_400), t.seconds.rem_euclid(86_400));
        // Civil date of a day number (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3_600,
            secs / 60 % 60,
            secs % 60
        )
    };
    let day = 86_400 * NS;
    // Every user: the whole dataset, and a day before and after it.
    let everyone = format!(
        "from={}&to={}&orderBy=COST_SUM&direction=DESC",
        rfc3339(DATASET_END_NS - 32 * day),
        rfc3339(DATASET_END_NS + day)
    );
    // A small export first: the memory the gateway needs for any export.
    let small = format!(
        "from={}&to={}&orderBy=COST_SUM&direction=DESC",
        rfc3339(DATASET_END_NS - 3_600 * NS),
        rfc3339(DATASET_END_NS)
    );
    let (idle_rss, _) = memory_kib(pid);
    let (small_bytes, small_rows, _) = export(small).await;
    let (after_small_rss, after_small_peak) = memory_kib(pid);

    let mut samples = Vec::with_capacity(runs);
    let mut shape = (0, 0, 0);
    for _ in 0..runs {
        let started = Instant::now();
        shape = export(everyone.clone()).await;
        samples.push(started.elapsed());
    }
    let (after_rss, after_peak) = memory_kib(pid);
    let (bytes, rows, during_peak) = shape;
    let p = Percentiles::of(samples);
    println!();
    println!("CSV export through `userlens gateway` (pid {pid}), COST_SUM DESC:");
    println!();
    println!("| export | p50 ms | p95 ms | p99 ms | runs | rows | bytes |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| every user | {:.1} | {:.1} | {:.1} | {} | {rows} | {bytes} |",
        ms(p.p50),
        ms(p.p95),
        ms(p.p99),
        p.runs
    );
    println!("| the last hour (once, before) | — | — | — | 1 | {small_rows} | {small_bytes} |");
    println!();
    println!("| gateway memory | RSS MiB | peak RSS (VmHWM) MiB |");
    println!("|---|---|---|");
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("| started, idle | {:.1} | — |", mib(idle_rss));
    println!(
        "| after one export of {small_rows} rows | {:.1} | {:.1} |",
        mib(after_small_rss),
        mib(after_small_peak)
    );
    println!(
        "| during the exports of {rows} rows (highest sample) | {:.1} | — |",
        mib(during_peak)
    );
    println!(
        "| after {runs} exports of {rows} rows | {:.1} | {:.1} |",
        mib(after_rss),
        mib(after_peak)
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
}
