//! The files userlens makes hold every project's data and its key: only their owner may read
//! them. Operator-chosen keys must be long enough not to be guessed.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

fn userlens() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_userlens"));
    command
        .env_remove("USERLENS_API_KEY")
        .env("RUST_LOG", "warn");
    command
}

/// A fresh directory under the system temp dir; `data/` inside it does not exist yet.
fn scratch_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "userlens-files-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `all-in-one` on ephemeral loopback ports with its data under `data_dir`.
fn all_in_one(data_dir: &Path) -> Command {
    let mut command = userlens();
    command.args([
        "all-in-one",
        "--database-url",
        &format!("sqlite://{}", data_dir.join("userlens.db").display()),
        "--key-file",
        &data_dir.join("api-key").display().to_string(),
        "--otlp-grpc-addr",
        "127.0.0.1:0",
        "--otlp-http-addr",
        "127.0.0.1:0",
        "--query-addr",
        "127.0.0.1:0",
        "--graphql-addr",
        "127.0.0.1:0",
    ]);
    command
}

/// Starts `command`, waits for its first line on stdout (the key line of all-in-one), kills it.
fn first_stdout_line(mut command: Command) -> String {
    let mut child: Child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start userlens");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.expect("read stdout");
    line
}

fn failure(mut command: Command) -> String {
    let output: Output = command.output().expect("run userlens");
    assert!(
        !output.status.success(),
        "expected a refusal, got success: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_data_directory_database_and_key_file_are_private() {
    let scratch = scratch_dir();
    let data = scratch.join("data");
    let line = first_stdout_line(all_in_one(&data));
    assert!(
        line.starts_with("userlens API key (project default): ul_"),
        "{line:?}"
    );
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("userlens.db")), 0o600, "database file");
    assert_eq!(mode(&data.join("api-key")), 0o600, "key file");
    for side_file in ["userlens.db-wal", "userlens.db-shm"] {
        let path = data.join(side_file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{side_file}");
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn migrate_makes_a_private_directory_and_database() {
    let scratch = scratch_dir();
    let data = scratch.join("nested").join("data");
    let output = userlens()
        .args([
            "migrate",
            "--database-url",
            &format!("sqlite://{}", data.join("userlens.db").display()),
        ])
        .output()
        .expect("run userlens migrate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(mode(&scratch.join("nested")), 0o700);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("userlens.db")), 0o600);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn a_key_file_open_to_others_is_refused() {
    let scratch = scratch_dir();
    let data = scratch.join("data");
    // A first start makes the key file; widen it as a careless copy would.
    first_stdout_line(all_in_one(&data));
    let key_file = data.join("api-key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let stderr = failure(all_in_one(&data));
    assert!(
        stderr.contains("open to other users") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    // Made private again, the same file is used.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let key = std::fs::read_to_string(&key_file).expect("key file");
    let line = first_stdout_line(all_in_one(&data));
    assert_eq!(
        line.trim_end(),
        format!("userlens API key (project default): {}", key.trim())
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn a_short_configured_key_is_refused_by_every_role() {
    let scratch = scratch_dir();
    let url = format!("sqlite://{}", scratch.join("userlens.db").display());
    let short = "ul_only_19_chars_xx";
    assert_eq!(short.len(), 19);
    for role in ["ingest", "query", "all-in-one"] {
        let mut command = userlens();
        command
            .args([role, "--database-url", &url])
            .env("USERLENS_API_KEY", short);
        let stderr = failure(command);
        assert!(
            stderr.contains("USERLENS_API_KEY") && stderr.contains("20 characters"),
            "{role}: {stderr}"
        );
    }
    // A short key in the key file is refused too.
    let data = scratch.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let key_file = data.join("api-key");
    std::fs::write(&key_file, "ul_short\n").expect("write key file");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let stderr = failure(all_in_one(&data));
    assert!(stderr.contains("20 characters"), "{stderr}");
    let _ = std::fs::remove_dir_all(&scratch);
}
