//! Tells the tests which real servers they were built to run against. A test that needs
//! PostgreSQL or Redis is `#[ignore]`d, with the variable to set as its reason, when the
//! variable is missing at build time, so the test runner itself reports it as not run. Under
//! CI both servers are required: a build without them fails instead of skipping their tests.

const SERVERS: [(&str, &str); 2] = [
    ("USERLENS_TEST_DATABASE_URL", "userlens_test_postgres"),
    ("USERLENS_TEST_REDIS_URL", "userlens_test_redis"),
];

fn main() {
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    for (variable, cfg) in SERVERS {
        println!("cargo::rerun-if-env-changed={variable}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if std::env::var(variable).is_ok_and(|v| !v.trim().is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        } else if ci {
            panic!(
                "CI runs every test on PostgreSQL and Redis too: {variable} must be set \
                 (see README, Test)"
            );
        }
    }
}
