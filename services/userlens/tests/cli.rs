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
        "USERLENS_MAX_QUEUED_SPANS",
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
            ],
        ),
        (
            &["gateway"],
            &[
                "USERLENS_GRAPHQL_ADDR",
                "USERLENS_QUERY_URL",
                "USERLENS_QUERY_TIMEOUT_MS",
                "USERLENS_CORS_ALLOWED_ORIGINS",
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
                "USERLENS_MAX_QUEUED_SPANS",
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
