//! A process using Redis checks at start that Redis keeps what it
//! is given (append-only file synced at least every second, no eviction) and
//! is not Redis Cluster. Each case runs `ichnaea drain` against a private
//! `redis-server` on a spare port (skipped where the test Redis is not set).

use ichnaea_testkit::binary::DataDir;
use ichnaea_testkit::private_redis::DURABLE;
use ichnaea_testkit::{PrivateRedis, TempDir, servers};

fn drain(redis: &PrivateRedis, allow_volatile: bool) -> ichnaea_testkit::binary::Run {
    let dir = DataDir::new(env!("CARGO_BIN_EXE_ichnaea"), "redis-check");
    let allow = if allow_volatile { "true" } else { "false" };
    dir.run_with(
        &["drain"],
        &[
            ("ICHNAEA_REDIS_URL", redis.url()),
            ("ICHNAEA_REDIS_ALLOW_VOLATILE", allow),
        ],
    )
}

#[test]
fn redis_durability_and_topology_are_checked_at_start() {
    if servers::redis_url().is_none() {
        return;
    }
    let tmp = TempDir::new("redis-check");
    let sub = |name: &str| {
        let path = tmp.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    };

    // Durable: starts without any override.
    let durable = PrivateRedis::start_in(&sub("durable"), &DURABLE);
    drain(&durable, false).expect_code(0);

    // No AOF and an evicting policy: refused, naming both and the override.
    let volatile = PrivateRedis::start_in(
        &sub("volatile"),
        &["--appendonly", "no", "--maxmemory-policy", "allkeys-lru"],
    );
    let run = drain(&volatile, false).expect_code(1);
    for needle in [
        "may lose accepted reports",
        "appendonly is \"no\"",
        "maxmemory-policy is \"allkeys-lru\"",
        "redis_allow_volatile = true",
    ] {
        assert!(run.stderr.contains(needle), "{needle}:\n{}", run.stderr);
    }
    // …unless overridden: then it runs and warns.
    let run = drain(&volatile, true).expect_code(0);
    assert!(
        run.stderr.contains("Redis may lose accepted reports"),
        "{}",
        run.stderr
    );

    // AOF left to the OS to sync: refused.
    let mut lazy = DURABLE;
    lazy[3] = "no";
    let lazy = PrivateRedis::start_in(&sub("lazy"), &lazy);
    let run = drain(&lazy, false).expect_code(1);
    assert!(
        run.stderr.contains("appendfsync is \"no\""),
        "{}",
        run.stderr
    );

    // CONFIG disabled (as on managed services): cannot check, so refused.
    let mut hidden = DURABLE.to_vec();
    hidden.extend(["--rename-command", "CONFIG", ""]);
    let hidden = PrivateRedis::start_in(&sub("hidden"), &hidden);
    let run = drain(&hidden, false).expect_code(1);
    assert!(
        run.stderr.contains("cannot be read (CONFIG GET failed"),
        "{}",
        run.stderr
    );
    drain(&hidden, true).expect_code(0);

    // Redis Cluster: refused even with the override (CROSSSLOT scripts).
    let nodes = sub("cluster").join("nodes.conf");
    let mut cluster = DURABLE.to_vec();
    let nodes = nodes.to_str().unwrap();
    cluster.extend(["--cluster-enabled", "yes", "--cluster-config-file", nodes]);
    let cluster = PrivateRedis::start_in(&sub("cluster"), &cluster);
    let run = drain(&cluster, true).expect_code(1);
    assert!(
        run.stderr
            .contains("runs in cluster mode (cluster_enabled:1)"),
        "{}",
        run.stderr
    );
}
