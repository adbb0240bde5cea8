//! `docker-compose.yml` describes the documented deployment: PostgreSQL, Redis, a one-shot
//! migration, then ingest, users-query and gateway from the one image, with health checks.
//! The YAML is checked here on every run; `docker compose config` validates it where Docker
//! runs (an ignored test: `-- --ignored compose`).

use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn compose_file() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docker-compose.yml"
    ))
    .expect("read docker-compose.yml")
}

/// A mapping with YAML merge keys (`<<`) applied, as Compose applies them.
fn merged(value: &Yaml) -> Yaml {
    match value {
        Yaml::Hash(hash) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            if let Some(base) = hash.get(&Yaml::String("<<".into()))
                && let Yaml::Hash(base) = merged(base)
            {
                out.extend(base);
            }
            for (key, value) in hash {
                if key.as_str() != Some("<<") {
                    out.insert(key.clone(), merged(value));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(items) => Yaml::Array(items.iter().map(merged).collect()),
        other => other.clone(),
    }
}

#[test]
fn compose_file_runs_every_role_with_health_checks() {
    let documents =
        YamlLoader::load_from_str(&compose_file()).expect("docker-compose.yml is valid YAML");
    let compose = merged(&documents[0]);
    let services = &compose["services"];
    for name in [
        "postgres",
        "redis",
        "migrate",
        "ingest",
        "users-query",
        "gateway",
    ] {
        assert!(!services[name].is_badvalue(), "service {name} missing");
    }
    for (name, role) in [
        ("migrate", "migrate"),
        ("ingest", "ingest"),
        ("users-query", "query"),
        ("gateway", "gateway"),
    ] {
        let service = &services[name];
        assert_eq!(
            service["build"].as_str(),
            Some("."),
            "{name} builds the one image"
        );
        assert_eq!(
            service["command"][0].as_str(),
            Some(role),
            "{name} runs `userlens {role}`"
        );
    }
    for name in ["postgres", "redis", "ingest", "users-query", "gateway"] {
        assert!(
            !services[name]["healthcheck"]["test"].is_badvalue(),
            "{name} has a health check"
        );
    }
    assert_eq!(
        services["ingest"]["depends_on"]["migrate"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    assert_eq!(
        services["gateway"]["environment"]["USERLENS_QUERY_URL"].as_str(),
        Some("http://users-query:50051")
    );
    for name in ["ingest", "users-query"] {
        let url = services[name]["environment"]["USERLENS_DATABASE_URL"]
            .as_str()
            .unwrap_or_default();
        assert!(url.starts_with("postgres://"), "{name} uses PostgreSQL");
    }
    assert!(
        services["users-query"]["environment"]["USERLENS_REDIS_URL"]
            .as_str()
            .is_some()
    );
}

#[test]
#[ignore = "needs Docker with compose: cargo test -p userlens-tests --test it -- --ignored compose"]
fn docker_compose_accepts_the_file() {
    let output = Command::new("docker")
        .args([
            "compose",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml"),
            "config",
            "--quiet",
        ])
        .env("USERLENS_API_KEY", "ul_compose_check_0123456789")
        .output()
        .expect("run docker compose config");
    assert!(
        output.status.success(),
        "docker compose config rejected the file: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
