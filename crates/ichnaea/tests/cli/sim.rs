//! `ichnaea sim` against a server that is not there: every command exits
//! non-zero, names the cause (the error's source chain, not only "error sending
//! request"), marks what failed as failed, and `sim load` backs off instead of
//! counting refused connections as tens of thousands of requests a second.

use std::net::TcpListener;

use serde_json::Value;

use super::DataDir;

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn sim_load_against_a_closed_port_fails_and_backs_off() {
    let dir = DataDir::new(env!("CARGO_BIN_EXE_ichnaea"), "sim-load-closed");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let run = dir.run(&[
        "sim",
        "load",
        "--url",
        &url,
        "--duration",
        "2s",
        "--concurrency",
        "4",
        "--json",
    ]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("nothing succeeded"), "{}", run.stderr);
    assert!(run.stderr.contains("refused"), "{}", run.stderr);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    // 4 workers backing off from 10 ms up to 1 s for 2 s: a few dozen
    // attempts, not tens of thousands.
    let requests = summary["requests"].as_u64().unwrap();
    assert!((4..=200).contains(&requests), "{requests} requests");
    assert_eq!(summary["errors"]["connect"].as_u64(), Some(requests));
}

#[test]
fn sim_traffic_and_accuracy_against_a_closed_port_fail_with_the_cause() {
    let dir = DataDir::new(env!("CARGO_BIN_EXE_ichnaea"), "sim-closed");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let traffic = dir.run(&[
        "sim",
        "traffic",
        "--url",
        &url,
        "--size-km",
        "1",
        "--reports",
        "3000",
    ]);
    assert_eq!(
        traffic.code,
        Some(1),
        "{}\n{}",
        traffic.stdout,
        traffic.stderr
    );
    assert!(
        traffic.stderr.contains("nothing succeeded"),
        "{}",
        traffic.stderr
    );
    assert!(traffic.stderr.contains("refused"), "{}", traffic.stderr);

    let accuracy = dir.run(&[
        "sim",
        "accuracy",
        "--url",
        &url,
        "--size-km",
        "1",
        "--positions",
        "20",
    ]);
    assert_eq!(
        accuracy.code,
        Some(1),
        "{}\n{}",
        accuracy.stdout,
        accuracy.stderr
    );
    assert!(accuracy.stderr.contains("refused"), "{}", accuracy.stderr);
    // Rows where every query failed say so instead of showing 0.0 m medians.
    assert!(accuracy.stdout.contains("FAILED"), "{}", accuracy.stdout);
    assert!(!accuracy.stdout.contains(" 0.0 "), "{}", accuracy.stdout);
}

#[test]
fn sim_world_reads_a_scenario_and_refuses_a_bad_one() {
    let dir = DataDir::new(env!("CARGO_BIN_EXE_ichnaea"), "sim-scenario");
    let scenarios = concat!(env!("CARGO_MANIFEST_DIR"), "/../sim/scenarios");
    let default = dir.run(&["sim", "world", "--size-km", "1"]).expect_code(0);
    let village = dir
        .run(&[
            "sim",
            "world",
            "--scenario",
            &format!("{scenarios}/village.toml"),
        ])
        .expect_code(0);
    let d: Value = serde_json::from_str(&default.stdout).unwrap();
    let v: Value = serde_json::from_str(&village.stdout).unwrap();
    assert!(d["params"].get("scenario").is_none());
    assert_eq!(v["params"]["scenario"]["name"], "sparse village");
    assert!(v["summary"]["wifi"].as_u64() > Some(0));

    let bad = std::env::temp_dir().join(format!("bad-scenario-{}.toml", std::process::id()));
    std::fs::write(&bad, "[radio.wifi]\nn = 3\n").unwrap();
    let refused = dir.run(&["sim", "world", "--scenario", bad.to_str().unwrap()]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("--scenario"), "{}", refused.stderr);
}
