//! `userlens --help` documents every role and every setting with its environment variable.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_userlens"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run userlens --help");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn help_lists_every_role() {
    let top = help(&[]);
    for role in [
        "all-in-one",
        "ingest",
        "query",
        "gateway",
        "migrate",
        "keys",
        "demo",
    ] {
        assert!(top.contains(role), "{role} missing from:\n{top}");
    }
}

#[test]
fn ingest_help_documents_every_environment_variable() {
    let ingest = help(&["ingest"]);
    for variable in [
        "USERLENS_DATABASE_URL",
        "USERLENS_DATABASE_MAX_CONNECTIONS",
        "USERLENS_API_KEY",
        "USERLENS_OTLP_GRPC_ADDR",
        "USERLENS_OTLP_HTTP_ADDR",
        "USERLENS_MAX_BODY_BYTES",
        "USERLENS_MAX_QUEUED_BYTES",
    ] {
        assert!(
            ingest.contains(variable),
            "{variable} missing from:\n{ingest}"
        );
    }
}

#[test]
fn every_role_documents_its_environment_variables() {
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["query"],
            &[
                "USERLENS_DATABASE_URL",
                "USERLENS_API_KEY",
                "USERLENS_REDIS_URL",
                "USERLENS_REDIS_KEY_PREFIX",
                "USERLENS_QUERY_ADDR",
                "USERLENS_QUERY_HTTP_ADDR",
                "USERLENS_SHUTDOWN_GRACE_MS",
            ],
        ),
        (
            &["gateway"],
            &[
                "USERLENS_GRAPHQL_ADDR",
                "USERLENS_QUERY_URL",
                "USERLENS_QUERY_TIMEOUT_MS",
                "USERLENS_CORS_ALLOWED_ORIGINS",
                "USERLENS_HTTP_HEADER_TIMEOUT_MS",
                "USERLENS_HTTP_MAX_CONNECTIONS",
                "USERLENS_SHUTDOWN_GRACE_MS",
            ],
        ),
        (
            &["all-in-one"],
            &[
                "USERLENS_DATABASE_URL",
                "USERLENS_REDIS_URL",
                "USERLENS_API_KEY",
                "USERLENS_KEY_FILE",
                "USERLENS_OTLP_GRPC_ADDR",
                "USERLENS_OTLP_HTTP_ADDR",
                "USERLENS_QUERY_ADDR",
                "USERLENS_GRAPHQL_ADDR",
                "USERLENS_MAX_BODY_BYTES",
                "USERLENS_MAX_QUEUED_BYTES",
                "USERLENS_HTTP_HEADER_TIMEOUT_MS",
                "USERLENS_HTTP_BODY_TIMEOUT_MS",
                "USERLENS_HTTP_MAX_CONNECTIONS",
                "USERLENS_SHUTDOWN_GRACE_MS",
            ],
        ),
        (
            &["demo"],
            &[
                "USERLENS_DEMO_ENDPOINT",
                "USERLENS_API_KEY",
                "USERLENS_KEY_FILE",
            ],
        ),
    ];
    for (args, variables) in cases {
        let text = help(args);
        for variable in variables {
            assert!(
                text.contains(variable),
                "{variable} missing from {args:?}:\n{text}"
            );
        }
    }
    // Without a command, userlens runs all-in-one: its flags are at the top level too.
    assert!(help(&[]).contains("USERLENS_GRAPHQL_ADDR"));
}

#[test]
fn keys_create_prints_the_key_alone() {
    let dir = std::env::temp_dir().join(format!("userlens-cli-{}", std::process::id()));
    let url = format!("sqlite://{}", dir.join("keys.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_userlens"))
        .args([
            "keys",
            "create",
            "--project",
            "acme",
            "--database-url",
            &url,
        ])
        .output()
        .expect("run userlens keys create");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let key = stdout.trim_end_matches('\n');
    assert!(
        key.starts_with("ul_") && key.len() == 67 && !key.contains('\n'),
        "{stdout:?}"
    );
}

/// The listen-address flags of `userlens <args>` and their defaults, read from `--help`.
fn listen_flags(args: &[&str]) -> Vec<(String, Option<String>)> {
    let text = help(args);
    let mut flags: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(flag) = trimmed.strip_prefix("--").or_else(|| {
            trimmed
                .split_once(", --")
                .filter(|(short, _)| short.starts_with('-'))
                .map(|(_, long)| long)
        }) {
            let name = flag.split_whitespace().next().unwrap_or_default();
            flags.push((name.to_owned(), String::new()));
        } else if let Some((_, description)) = flags.last_mut() {
            description.push_str(trimmed);
            description.push(' ');
        }
    }
    flags
        .into_iter()
        .filter(|(name, _)| name.ends_with("-addr"))
        .map(|(name, description)| {
            let default = description
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(value, _)| value.to_owned());
            (name, default)
        })
        .collect()
}

#[test]
fn every_listener_of_every_role_defaults_to_loopback() {
    let cases: [(&[&str], &[&str], &[&str]); 5] = [
        (
            &[],
            &[
                "otlp-grpc-addr",
                "otlp-http-addr",
                "graphql-addr",
                "query-addr",
            ],
            &["query-http-addr"],
        ),
        (
            &["all-in-one"],
            &[
                "otlp-grpc-addr",
                "otlp-http-addr",
                "graphql-addr",
                "query-addr",
            ],
            &["query-http-addr"],
        ),
        (&["ingest"], &["otlp-grpc-addr", "otlp-http-addr"], &[]),
        (&["query"], &["query-addr"], &["query-http-addr"]),
        (&["gateway"], &["graphql-addr"], &[]),
    ];
    for (args, with_default, unset) in cases {
        let flags = listen_flags(args);
        let mut names: Vec<&str> = flags.iter().map(|(name, _)| name.as_str()).collect();
        names.sort_unstable();
        let mut expected: Vec<&str> = with_default.iter().chain(unset).copied().collect();
        expected.sort_unstable();
        assert_eq!(names, expected, "listen flags of {args:?}");
        for (name, default) in &flags {
            match default {
                Some(default) => {
                    let addr: std::net::SocketAddr = default
                        .parse()
                        .unwrap_or_else(|e| panic!("{args:?} --{name} default {default}: {e}"));
                    assert_eq!(
                        addr.ip(),
                        std::net::IpAddr::from([127, 0, 0, 1]),
                        "{args:?} --{name} listens on {addr} by default"
                    );
                }
                None => assert!(
                    unset.contains(&name.as_str()),
                    "{args:?} --{name} has no default"
                ),
            }
        }
    }
    // The gateway's and the demo's default peers are on loopback too.
    assert!(help(&["gateway"]).contains("[default: http://127.0.0.1:50051]"));
    assert!(help(&["demo"]).contains("[default: http://127.0.0.1:4317]"));
}
