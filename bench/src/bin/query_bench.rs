//! Users-page query benchmark: loads N synthetic traces for M users through the real ingest
//! path (once; reruns reuse the project), then measures the users-query gRPC API and, for
//! comparison, one naive GROUP BY over the raw spans on the same database.
//!
//! cargo run --release -p userlens-bench --bin query_bench -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/userlens_bench \
//!     --redis-url redis://127.0.0.1:6379 --traces 1000000 --users 50000

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
    GetUserDetailRequest, GetUsersOverviewRequest, ListSessionsRequest, ListUsersRequest,
    OrderDirection, TimeRange, UserOrderField,
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
    let users = |i: usize, field: UserOrderField| ListUsersRequest {
        range: range(from, to + i as i64),
        order_field: field as i32,
        order_direction: OrderDirection::Desc as i32,
        first: Some(50),
        ..Default::default()
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

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
