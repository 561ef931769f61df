//! The queue contract: FIFO entries, leases, acknowledgement, transfer and
//! the leader lease.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ichnaea_queue::{Batch, Queue};

use crate::{Fixture, on_redis, on_sqlite};

/// A long visibility: the batch must not come back during the test.
const LONG: Duration = Duration::from_secs(60);

ichnaea_testkit::backend_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    sqlite => on_sqlite, redis => on_redis;
    fifo_order_across_pushes,
    push_is_one_entry_in_item_order,
    lease_respects_max_items,
    leased_batch_is_invisible_until_visibility_expires,
    ack_removes_for_good,
    double_ack_is_harmless,
    len_counts_items,
    oldest_age_tracks_oldest_unacked_entry,
    queue_names_with_prefix,
    purge_removes_one_queue_leased_entries_included,
    queues_do_not_interfere,
    concurrent_consumers_see_every_item_once,
    reopened_queue_keeps_unacked_entries,
    transfer_hands_items_on_exactly_once,
    leader_lease_is_exclusive_and_expires,
    periodic_runs_are_claimed_once_per_interval_across_leaders,
);

fn items(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|n| n.as_bytes().to_vec()).collect()
}

async fn lease(q: &Queue, queue: &str, max_items: usize) -> Option<Batch> {
    q.lease(queue, max_items, LONG).await.expect("lease")
}

async fn fifo_order_across_pushes(f: &Fixture<Queue>) {
    let q = f.queue();
    q.ping().await.unwrap();
    q.push("update_incoming", items(&["a1"])).await.unwrap();
    q.push("update_incoming", items(&["b1", "b2"]))
        .await
        .unwrap();
    q.push("update_incoming", items(&["c1"])).await.unwrap();
    q.push("update_incoming", items(&["d1"])).await.unwrap();

    let first = lease(q, "update_incoming", 1).await.unwrap();
    assert_eq!(first.items, items(&["a1"]));
    let second = lease(q, "update_incoming", 1).await.unwrap();
    assert_eq!(second.items, items(&["b1", "b2"]));
    let rest = lease(q, "update_incoming", 100).await.unwrap();
    assert_eq!(rest.items, items(&["c1", "d1"]));
    assert!(lease(q, "update_incoming", 100).await.is_none());
    assert_eq!(rest.queue, "update_incoming");
    let ids: HashSet<_> = [&first.id, &second.id, &rest.id].into_iter().collect();
    assert_eq!(ids.len(), 3, "every batch has its own id");
}

async fn push_is_one_entry_in_item_order(f: &Fixture<Queue>) {
    let q = f.queue();
    let binary: Vec<u8> = (0..=255).collect();
    let pushed = vec![b"first".to_vec(), Vec::new(), binary, b"last".to_vec()];
    q.push("q", pushed.clone()).await.unwrap();
    q.push("q", items(&["next"])).await.unwrap();
    // Pushing nothing adds no entry.
    q.push("q", Vec::new()).await.unwrap();
    q.push("empty", Vec::new()).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 5);
    assert_eq!(q.len("empty").await.unwrap(), 0);
    assert!(lease(q, "empty", 10).await.is_none());

    // max_items 2 is less than the entry holds: the whole entry comes, nothing more.
    let batch = lease(q, "q", 2).await.unwrap();
    assert_eq!(batch.items, pushed);
    assert_eq!(batch.queue, "q");
    assert!(!batch.id.is_empty());
    let next = lease(q, "q", 2).await.unwrap();
    assert_eq!(next.items, items(&["next"]));
    assert!(lease(q, "q", 2).await.is_none());
}

async fn lease_respects_max_items(f: &Fixture<Queue>) {
    let q = f.queue();
    for entry in [
        &["a1", "a2"][..],
        &["b1", "b2"],
        &["c1", "c2"],
        &["d1", "d2", "d3", "d4", "d5"],
        &["e1"],
        &["f1"],
        &["g1"],
    ] {
        q.push("q", items(entry)).await.unwrap();
    }
    // 2 + 2 = 4 fits in 5; adding the next entry would make 6.
    assert_eq!(
        lease(q, "q", 5).await.unwrap().items,
        items(&["a1", "a2", "b1", "b2"])
    );
    // 2 + 5 = 7 does not fit.
    assert_eq!(lease(q, "q", 5).await.unwrap().items, items(&["c1", "c2"]));
    // One entry larger than max_items still comes, alone.
    assert_eq!(
        lease(q, "q", 3).await.unwrap().items,
        items(&["d1", "d2", "d3", "d4", "d5"])
    );
    // max_items 0 still gives one entry.
    assert_eq!(lease(q, "q", 0).await.unwrap().items, items(&["e1"]));
    // Exactly max_items.
    assert_eq!(lease(q, "q", 2).await.unwrap().items, items(&["f1", "g1"]));
    assert!(lease(q, "q", 100).await.is_none());
    assert_eq!(q.len("q").await.unwrap(), 14);

    // Many small entries: a batch spans as many as fit, in order.
    for i in 0..100 {
        q.push("many", vec![format!("{i}").into_bytes()])
            .await
            .unwrap();
    }
    let numbered = |range: std::ops::Range<usize>| -> Vec<Vec<u8>> {
        range.map(|i| format!("{i}").into_bytes()).collect()
    };
    assert_eq!(lease(q, "many", 70).await.unwrap().items, numbered(0..70));
    assert_eq!(
        lease(q, "many", 1000).await.unwrap().items,
        numbered(70..100)
    );
    assert!(lease(q, "many", 1000).await.is_none());
}

async fn leased_batch_is_invisible_until_visibility_expires(f: &Fixture<Queue>) {
    let q = f.queue();
    q.push("q", items(&["a1", "a2", "a3"])).await.unwrap();
    q.push("q", items(&["b1"])).await.unwrap();

    let short = q
        .lease("q", 1, Duration::from_millis(1500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(short.items, items(&["a1", "a2", "a3"]));
    let long = lease(q, "q", 10).await.unwrap();
    assert_eq!(long.items, items(&["b1"]));
    assert_ne!(short.id, long.id);
    assert!(lease(q, "q", 10).await.is_none(), "both batches are leased");

    tokio::time::sleep(Duration::from_millis(2000)).await;
    // The expired batch comes back whole, with the same id, whatever max_items says.
    let again = q
        .lease("q", 1, Duration::from_millis(1500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, short.id);
    assert_eq!(again.items, short.items);
    assert_eq!(again.queue, "q");
    assert!(
        lease(q, "q", 10).await.is_none(),
        "re-leased batch is invisible again"
    );

    // And once more after the new lease expires.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let third = lease(q, "q", 10).await.unwrap();
    assert_eq!(third.id, short.id);
    assert_eq!(third.items, short.items);

    q.ack(&third).await.unwrap();
    q.ack(&long).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 0);
    assert!(lease(q, "q", 10).await.is_none());
}

async fn ack_removes_for_good(f: &Fixture<Queue>) {
    let q = f.queue();
    q.push("q", items(&["a1", "a2"])).await.unwrap();
    q.push("q", items(&["b1"])).await.unwrap();
    let batch = q
        .lease("q", 2, Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.items, items(&["a1", "a2"]));
    assert_eq!(q.len("q").await.unwrap(), 3);
    q.ack(&batch).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 1);

    // Past the old visibility the acknowledged batch does not come back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let next = q
        .lease("q", 10, Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.items, items(&["b1"]));
    assert_ne!(next.id, batch.id);
    q.ack(&next).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(lease(q, "q", 10).await.is_none());
    assert_eq!(q.len("q").await.unwrap(), 0);
    assert_eq!(q.oldest_age("q").await.unwrap(), None);
}

async fn double_ack_is_harmless(f: &Fixture<Queue>) {
    let q = f.queue();
    q.push("q", items(&["a1", "a2"])).await.unwrap();
    q.push("q", items(&["b1", "b2", "b3"])).await.unwrap();
    let a = lease(q, "q", 2).await.unwrap();
    q.ack(&a).await.unwrap();
    q.ack(&a).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 3);
    let b = lease(q, "q", 2).await.unwrap();
    assert_eq!(b.items, items(&["b1", "b2", "b3"]));
    q.ack(&b).await.unwrap();
    q.ack(&a).await.unwrap();
    q.ack(&b).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 0);

    // Ack by the first holder after the batch was re-leased to someone else.
    q.push("q", items(&["c1", "c2", "c3", "c4"])).await.unwrap();
    q.push("q", items(&["d1"])).await.unwrap();
    let first_holder = q
        .lease("q", 4, Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second_holder = lease(q, "q", 4).await.unwrap();
    assert_eq!(second_holder.id, first_holder.id);
    q.ack(&first_holder).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 1);
    q.ack(&second_holder).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 1);
    assert_eq!(lease(q, "q", 10).await.unwrap().items, items(&["d1"]));
    assert_eq!(q.len("q").await.unwrap(), 1);
}

async fn len_counts_items(f: &Fixture<Queue>) {
    let q = f.queue();
    assert_eq!(q.len("never_used").await.unwrap(), 0);
    q.push("q", items(&["a1", "a2", "a3"])).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 3);
    q.push("q", items(&["b1", "b2"])).await.unwrap();
    q.push("other", items(&["x"])).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 5);
    let batch = lease(q, "q", 3).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 5, "leased items still count");
    q.ack(&batch).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 2);
    assert_eq!(q.len("other").await.unwrap(), 1);
}

async fn oldest_age_tracks_oldest_unacked_entry(f: &Fixture<Queue>) {
    let q = f.queue();
    assert_eq!(q.oldest_age("q").await.unwrap(), None);
    let pushed = Instant::now();
    q.push("q", items(&["a"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    q.push("q", items(&["b"])).await.unwrap();

    let age = q.oldest_age("q").await.unwrap().unwrap();
    assert!(age >= Duration::from_millis(400), "age {age:?}");
    assert!(
        age <= pushed.elapsed() + Duration::from_millis(50),
        "age {age:?}"
    );

    // A leased entry is still unacknowledged and still the oldest.
    let first = lease(q, "q", 1).await.unwrap();
    assert_eq!(first.items, items(&["a"]));
    assert!(q.oldest_age("q").await.unwrap().unwrap() >= Duration::from_millis(400));

    q.ack(&first).await.unwrap();
    let age = q.oldest_age("q").await.unwrap().unwrap();
    assert!(
        age < Duration::from_millis(400),
        "second entry's age {age:?}"
    );

    let second = lease(q, "q", 1).await.unwrap();
    q.ack(&second).await.unwrap();
    assert_eq!(q.oldest_age("q").await.unwrap(), None);
}

async fn queue_names_with_prefix(f: &Fixture<Queue>) {
    let q = f.queue();
    assert_eq!(q.queue_names("").await.unwrap(), Vec::<String>::new());
    q.push("update_incoming", items(&["x"])).await.unwrap();
    q.push("queue_export_backup:gnss:key", items(&["x"]))
        .await
        .unwrap();
    q.push("queue_export_internal", items(&["x", "y"]))
        .await
        .unwrap();
    q.push("queue_export_dummy", Vec::new()).await.unwrap();

    assert_eq!(
        q.queue_names("queue_export_").await.unwrap(),
        vec!["queue_export_backup:gnss:key", "queue_export_internal"]
    );
    assert_eq!(
        q.queue_names("").await.unwrap(),
        vec![
            "queue_export_backup:gnss:key",
            "queue_export_internal",
            "update_incoming"
        ]
    );
    assert_eq!(
        q.queue_names("queue_export_backup:").await.unwrap(),
        vec!["queue_export_backup:gnss:key"]
    );
    assert_eq!(
        q.queue_names("update_wifi").await.unwrap(),
        Vec::<String>::new()
    );

    // Leased items still count; acknowledged ones do not.
    let batch = lease(q, "queue_export_internal", 10).await.unwrap();
    assert_eq!(
        q.queue_names("queue_export_").await.unwrap(),
        vec!["queue_export_backup:gnss:key", "queue_export_internal"]
    );
    q.ack(&batch).await.unwrap();
    assert_eq!(
        q.queue_names("queue_export_").await.unwrap(),
        vec!["queue_export_backup:gnss:key"]
    );
}

async fn queues_do_not_interfere(f: &Fixture<Queue>) {
    let q = f.queue();
    let names = [
        "update_wifi_a",
        "update_wifi_ab",
        "update_wifi_a:1",
        "odd {name}",
    ];
    for (i, name) in names.iter().enumerate() {
        for entry in 0..3 {
            q.push(name, vec![format!("{name}/{entry}").into_bytes(); i + 1])
                .await
                .unwrap();
        }
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(q.len(name).await.unwrap(), 3 * (i as u64 + 1));
    }
    for (i, name) in names.iter().enumerate() {
        let batch = lease(q, name, 100).await.unwrap();
        assert_eq!(batch.queue, *name);
        let expected: Vec<Vec<u8>> = (0..3)
            .flat_map(|entry| vec![format!("{name}/{entry}").into_bytes(); i + 1])
            .collect();
        assert_eq!(batch.items, expected);
        q.ack(&batch).await.unwrap();
        assert_eq!(q.len(name).await.unwrap(), 0);
        for (j, other) in names.iter().enumerate().skip(i + 1) {
            assert_eq!(q.len(other).await.unwrap(), 3 * (j as u64 + 1));
        }
    }
    for name in names {
        assert!(lease(q, name, 100).await.is_none());
    }
}

async fn concurrent_consumers_see_every_item_once(f: &Fixture<Queue>) {
    const PUSHES: usize = 200;
    const PER_PUSH: usize = 5;
    let q = f.queue().clone();
    let pushing = Arc::new(AtomicBool::new(true));

    let producers: Vec<_> = (0..2)
        .map(|producer| {
            let q = q.clone();
            tokio::spawn(async move {
                for push in (producer..PUSHES).step_by(2) {
                    let entry = (0..PER_PUSH)
                        .map(|i| format!("{push}:{i}").into_bytes())
                        .collect();
                    q.push("update_incoming", entry).await.unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            let pushing = pushing.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut batch_ids = Vec::new();
                loop {
                    let still_pushing = pushing.load(Ordering::SeqCst);
                    match q.lease("update_incoming", 12, LONG).await.unwrap() {
                        Some(batch) => {
                            // Whole entries of 5, at most 12 items: one or two entries.
                            let n = batch.items.len();
                            assert!(n == PER_PUSH || n == 2 * PER_PUSH, "batch of {n} items");
                            q.ack(&batch).await.unwrap();
                            batch_ids.push(batch.id);
                            seen.extend(batch.items);
                        }
                        None if still_pushing => tokio::task::yield_now().await,
                        None => return (seen, batch_ids),
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    pushing.store(false, Ordering::SeqCst);

    let mut seen = Vec::new();
    let mut batch_ids = Vec::new();
    for consumer in consumers {
        let (items, ids) = consumer.await.unwrap();
        seen.extend(items);
        batch_ids.extend(ids);
    }
    let mut expected: Vec<Vec<u8>> = (0..PUSHES)
        .flat_map(|push| (0..PER_PUSH).map(move |i| format!("{push}:{i}").into_bytes()))
        .collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen.len(), PUSHES * PER_PUSH);
    assert_eq!(seen, expected, "every item exactly once");
    let unique: HashSet<_> = batch_ids.iter().collect();
    assert_eq!(unique.len(), batch_ids.len(), "batch ids are unique");
    assert_eq!(q.len("update_incoming").await.unwrap(), 0);
    assert!(lease(&q, "update_incoming", 7).await.is_none());
}

async fn reopened_queue_keeps_unacked_entries(f: &Fixture<Queue>) {
    let q = f.queue();
    q.push("q", items(&["a1", "a2"])).await.unwrap();
    q.push("q", items(&["b1"])).await.unwrap();
    q.push("q", items(&["c1", "c2", "c3"])).await.unwrap();
    let acked = lease(q, "q", 2).await.unwrap();
    q.ack(&acked).await.unwrap();
    // Leased by a consumer that then dies.
    let lost = q
        .lease("q", 1, Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lost.items, items(&["b1"]));

    let reopened = f.reopen().await;
    // Opening again on existing storage is harmless.
    let reopened_twice = f.reopen().await;
    assert_eq!(reopened.len("q").await.unwrap(), 4);
    assert_eq!(reopened_twice.len("q").await.unwrap(), 4);
    assert!(reopened.oldest_age("q").await.unwrap().is_some());
    assert_eq!(reopened.queue_names("").await.unwrap(), vec!["q"]);

    let c = lease(&reopened, "q", 10).await.unwrap();
    assert_eq!(c.items, items(&["c1", "c2", "c3"]));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let b = lease(&reopened, "q", 10).await.unwrap();
    assert_eq!(b.id, lost.id);
    assert_eq!(b.items, items(&["b1"]));
    reopened.ack(&b).await.unwrap();
    reopened.ack(&c).await.unwrap();
    assert_eq!(q.len("q").await.unwrap(), 0);
    assert_eq!(reopened.len("q").await.unwrap(), 0);
}

async fn transfer_hands_items_on_exactly_once(f: &Fixture<Queue>) {
    let q = f.queue();
    q.push("in", items(&["r1", "r2"])).await.unwrap();
    let short = std::time::Duration::from_millis(200);
    // A consumer leases the batch and stalls past its visibility timeout.
    let stalled = q.lease("in", 10, short).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Another consumer gets the same batch and hands its work on.
    let again = q.lease("in", 10, LONG).await.unwrap().unwrap();
    assert_eq!(again.id, stalled.id);
    let outputs = vec![
        ("out_a".to_string(), items(&["a1", "a2"])),
        ("out_b".to_string(), items(&["b1"])),
        ("out_c".to_string(), Vec::new()),
    ];
    assert!(q.transfer(&again, &outputs).await.unwrap());
    // The stalled consumer finishes late: a replay, so nothing happens.
    assert!(!q.transfer(&stalled, &outputs).await.unwrap());
    assert_eq!(q.len("in").await.unwrap(), 0);
    assert!(lease(q, "in", 10).await.is_none());
    assert_eq!(q.len("out_a").await.unwrap(), 2);
    assert_eq!(q.len("out_b").await.unwrap(), 1);
    assert_eq!(q.len("out_c").await.unwrap(), 0);
    assert_eq!(
        lease(q, "out_a", 10).await.unwrap().items,
        items(&["a1", "a2"])
    );
    assert_eq!(lease(q, "out_b", 10).await.unwrap().items, items(&["b1"]));
    let names = q.queue_names("out_").await.unwrap();
    assert_eq!(names, vec!["out_a".to_string(), "out_b".to_string()]);
}

async fn leader_lease_is_exclusive_and_expires(f: &Fixture<Queue>) {
    let ttl = std::time::Duration::from_millis(300);
    let a = ichnaea_queue::LeaderLease::for_queue(f.queue(), "scheduler");
    let b = ichnaea_queue::LeaderLease::for_queue(f.queue(), "scheduler");
    assert!(a.hold(ttl).await.unwrap());
    if matches!(a, ichnaea_queue::LeaderLease::Local) {
        // One process: always the leader.
        assert!(b.hold(ttl).await.unwrap());
        return;
    }
    assert!(!b.hold(ttl).await.unwrap(), "the lease is exclusive");
    assert!(a.hold(ttl).await.unwrap(), "the holder renews");
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert!(
        b.hold(ttl).await.unwrap(),
        "an expired lease passes to the spare"
    );
    assert!(!a.hold(ttl).await.unwrap());
    b.release().await.unwrap();
    assert!(
        a.hold(ttl).await.unwrap(),
        "a released lease is free at once"
    );
    a.release().await.unwrap();
}

async fn periodic_runs_are_claimed_once_per_interval_across_leaders(f: &Fixture<Queue>) {
    let interval = std::time::Duration::from_millis(400);
    let a = ichnaea_queue::LeaderLease::for_queue(f.queue(), "scheduler");
    let b = ichnaea_queue::LeaderLease::for_queue(f.queue(), "scheduler");
    assert_eq!(a.claim_run("task", interval).await.unwrap(), None);
    if matches!(a, ichnaea_queue::LeaderLease::Local) {
        // One process: its own timer is the only one.
        return;
    }
    // Another process (a new leader) waits for the rest of the interval.
    let left = b
        .claim_run("task", interval)
        .await
        .unwrap()
        .expect("claimed");
    assert!(
        left <= interval && left > std::time::Duration::ZERO,
        "{left:?}"
    );
    assert!(a.claim_run("task", interval).await.unwrap().is_some());
    // Other tasks are claimed on their own.
    assert_eq!(b.claim_run("other", interval).await.unwrap(), None);
    tokio::time::sleep(left + std::time::Duration::from_millis(50)).await;
    assert_eq!(b.claim_run("task", interval).await.unwrap(), None);
}

async fn purge_removes_one_queue_leased_entries_included(f: &Fixture<Queue>) {
    let q = f.queue();
    q.push("queue_export_gone", items(&["a", "b"]))
        .await
        .unwrap();
    q.push("queue_export_gone", items(&["c"])).await.unwrap();
    q.push("queue_export_gone2", items(&["x"])).await.unwrap();
    let leased = lease(q, "queue_export_gone", 2).await.unwrap();
    assert_eq!(q.purge("queue_export_gone").await.unwrap(), 3);
    assert_eq!(q.len("queue_export_gone").await.unwrap(), 0);
    assert_eq!(
        q.queue_names("queue_export_").await.unwrap(),
        vec!["queue_export_gone2"]
    );
    assert!(lease(q, "queue_export_gone", 100).await.is_none());
    // Acknowledging a purged batch is harmless and counts nothing twice.
    q.ack(&leased).await.unwrap();
    assert_eq!(q.len("queue_export_gone").await.unwrap(), 0);
    assert_eq!(q.purge("queue_export_gone").await.unwrap(), 0);
    // The queue works again after a purge.
    q.push("queue_export_gone", items(&["d"])).await.unwrap();
    assert_eq!(q.len("queue_export_gone").await.unwrap(), 1);
    assert_eq!(q.len("queue_export_gone2").await.unwrap(), 1);
}
