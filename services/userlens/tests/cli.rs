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
    for role in ["ingest", "migrate", "keys"] {
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
