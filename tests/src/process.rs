//! The real `userlens` binary as a child process on ephemeral ports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::stack::redis_url;
use crate::{Backend, TestDatabase};

/// Path of the `userlens` binary next to the test executable, built from the current
/// sources once per test run (cargo does nothing when it is up to date), so a process test
/// never runs a binary left over from other sources.
pub fn userlens_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_userlens_binary).clone()
}

fn build_userlens_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/userlens
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet", "-p", "userlens", "--bin", "userlens"]);
    if let Some(target_dir) = profile_dir.parent() {
        build.env("CARGO_TARGET_DIR", target_dir);
    }
    if release {
        build.arg("--release");
    }
    let status = build
        .status()
        .expect("run cargo build for the userlens binary");
    assert!(status.success(), "building the userlens binary failed");
    profile_dir.join(format!("userlens{}", std::env::consts::EXE_SUFFIX))
}

/// A running `userlens` process; killed when dropped.
pub struct UserlensProcess {
    child: Child,
    /// Listener name (`otlp-grpc`, `otlp-http`, …) → bound address.
    pub addrs: HashMap<String, SocketAddr>,
    /// Every line the process wrote to stderr (its log), in order.
    log: Arc<Mutex<Vec<String>>>,
    /// Every line the process wrote to stdout, in order.
    stdout: Arc<Mutex<Vec<String>>>,
    /// The tasks draining stdout and stderr; they end when the process closes them.
    drains: Vec<JoinHandle<()>>,
}

/// What a stopped process wrote.
#[derive(Debug, Clone, Default)]
pub struct ProcessOutput {
    /// stderr: the log.
    pub log: Vec<String>,
    pub stdout: Vec<String>,
}

impl UserlensProcess {
    /// Starts `userlens <args>` with `env` and waits until every listener in `listeners` is bound.
    pub async fn start(args: &[&str], env: &[(&str, &str)], listeners: &[&str]) -> Self {
        let mut command = Command::new(userlens_binary());
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start userlens");
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let printed = Arc::new(Mutex::new(Vec::new()));
        // Keep draining stdout so the child never blocks on a full pipe.
        let stdout_drain = tokio::spawn({
            let printed = Arc::clone(&printed);
            async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("userlens (stdout): {line}");
                    keep(&printed, line);
                }
            }
        });
        let mut lines = BufReader::new(stderr).lines();
        let mut addrs = HashMap::new();
        let wait = async {
            while addrs.len() < listeners.len() {
                let Some(line) = lines.next_line().await.expect("read userlens stderr") else {
                    panic!("userlens exited before listening");
                };
                eprintln!("userlens: {line}");
                if let Some((name, addr)) = parse_listening(&line) {
                    addrs.insert(name, addr);
                }
                keep(&log, line);
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("userlens did not start listening within 60 s");
        // Keep draining the log so the child never blocks on a full pipe.
        let log_drain = tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("userlens: {line}");
                    keep(&log, line);
                }
            }
        });
        Self {
            child,
            addrs,
            log,
            stdout: printed,
            drains: vec![stdout_drain, log_drain],
        }
    }

    /// The log lines (stderr) the process wrote so far.
    pub fn log_lines(&self) -> Vec<String> {
        lines_of(&self.log)
    }

    /// The lines the process printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        lines_of(&self.stdout)
    }

    /// The process id, to read the process's `/proc` entries.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        *self
            .addrs
            .get(listener)
            .unwrap_or_else(|| panic!("no listener {listener}"))
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn stop(mut self) {
        self.terminate().await;
    }

    /// Sends SIGTERM, waits for a clean exit and returns everything the process wrote.
    pub async fn stop_and_collect(mut self) -> ProcessOutput {
        self.terminate().await;
        for drain in std::mem::take(&mut self.drains) {
            let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        }
        ProcessOutput {
            log: self.log_lines(),
            stdout: self.stdout_lines(),
        }
    }

    async fn terminate(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("userlens did not stop within 30 s after SIGTERM")
            .expect("wait for userlens");
        assert!(status.success(), "userlens exited with {status}");
    }
}

fn keep(lines: &Mutex<Vec<String>>, line: String) {
    lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(line);
}

fn lines_of(lines: &Mutex<Vec<String>>) -> Vec<String> {
    lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Reads `listener=NAME addr=ADDR` out of a `listening` log line.
fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    if !line.contains("listening") {
        return None;
    }
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .map(|v| v.trim_matches('"').to_owned())
    };
    let name = field("listener=")?;
    let addr = field("addr=")?.parse().ok()?;
    Some((name, addr))
}

/// `userlens all-in-one` on ephemeral loopback ports (every listener, the query role's
/// `/metrics` included) over `database`, with a key file of its own and, next to
/// PostgreSQL, Redis under a key prefix of its own. `env` and `args` come on top; the key
/// file's path is returned with the process (it exists only when all-in-one made a key).
pub async fn start_all_in_one(
    database: &TestDatabase,
    env: &[(&str, &str)],
    args: &[&str],
) -> (UserlensProcess, PathBuf) {
    let tag = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
    let key_file = std::env::temp_dir().join(format!("userlens-test-{tag}.key"));
    let mut owned_env = vec![
        ("USERLENS_DATABASE_URL", database.url.clone()),
        ("USERLENS_KEY_FILE", key_file.display().to_string()),
    ];
    if database.backend == Backend::Postgres
        && let Some(redis) = redis_url()
    {
        owned_env.push(("USERLENS_REDIS_URL", redis));
        owned_env.push(("USERLENS_REDIS_KEY_PREFIX", format!("userlens-test-{tag}:")));
    }
    let mut all_env: Vec<(&str, &str)> = owned_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all_env.extend_from_slice(env);
    let mut all_args = vec![
        "all-in-one",
        "--otlp-grpc-addr",
        "127.0.0.1:0",
        "--otlp-http-addr",
        "127.0.0.1:0",
        "--query-addr",
        "127.0.0.1:0",
        "--query-http-addr",
        "127.0.0.1:0",
        "--graphql-addr",
        "127.0.0.1:0",
    ];
    all_args.extend_from_slice(args);
    let process = UserlensProcess::start(
        &all_args,
        &all_env,
        &[
            "otlp-grpc",
            "otlp-http",
            "query-grpc",
            "query-http",
            "graphql",
        ],
    )
    .await;
    (process, key_file)
}
