//! The PostgreSQL work queue's rules, against a private PostgreSQL cluster on 127.0.0.1.

use std::time::Duration;

use serde_json::json;
use velo_child::postgres::Postgres;
use velo_io::queue::{QueueError, QueueOptions, WorkQueue};

/// A cluster with a database `velo`, or `None` (a visible skip) where PostgreSQL is missing
/// and integration tests are not required.
#[allow(clippy::print_stderr, reason = "a skipped test says so visibly")]
fn postgres() -> Option<(Postgres, String)> {
    let Some(bin) = velo_child::postgres::bin_dir() else {
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os("VELO_IT").is_none(),
            "PostgreSQL is required (run `cargo xtask install`)"
        );
        eprintln!("SKIPPED: PostgreSQL is not installed");
        return None;
    };
    let postgres =
        Postgres::start(&bin).unwrap_or_else(|error| panic!("cannot start PostgreSQL: {error}"));
    postgres
        .create_database("velo")
        .unwrap_or_else(|error| panic!("cannot create the database: {error}"));
    let url = postgres.url("velo");
    Some((postgres, url))
}

fn options(lease_ms: u64, max_attempts: i32) -> QueueOptions {
    QueueOptions {
        lease: Duration::from_millis(lease_ms),
        max_attempts,
    }
}

#[test]
fn a_lapsed_lease_is_claimed_again_and_the_late_answer_dropped() {
    let Some((_postgres, url)) = postgres() else {
        return;
    };
    let mut job = WorkQueue::connect(&url, options(300, 3)).unwrap();
    job.open(
        "b",
        "square",
        &json!({"shared": true}),
        &[json!(2), json!(3)],
    )
    .unwrap();
    assert_eq!(job.context("b").unwrap(), json!({"shared": true}));
    let mut first = WorkQueue::connect(&url, QueueOptions::default()).unwrap();
    let mut second = WorkQueue::connect(&url, QueueOptions::default()).unwrap();
    let held = first.claim("w0", &["square"]).unwrap().unwrap();
    assert_eq!((held.position, held.attempt), (0, 1));
    // Another kind's worker sees nothing; the other task is next for anyone else.
    assert_eq!(second.claim("w1", &["other"]).unwrap(), None);
    // No heartbeat: once the lease lapses, the oldest task is claimable again.
    std::thread::sleep(Duration::from_millis(500));
    let again = second.claim("w1", &["square"]).unwrap().unwrap();
    assert_eq!((again.id, again.attempt), (held.id, 2));
    assert!(
        !first.complete(&held, "w0", &json!(-1)).unwrap(),
        "the late answer is dropped"
    );
    assert!(second.complete(&again, "w1", &json!(4)).unwrap());
    let last = second.claim("w1", &["square"]).unwrap().unwrap();
    assert_eq!(last.position, 1);
    assert!(second.complete(&last, "w1", &json!(9)).unwrap());
    assert_eq!(second.claim("w1", &["square"]).unwrap(), None);
    let results = job.wait("b", Duration::from_secs(10), |_| {}).unwrap();
    assert_eq!(results, [json!(4), json!(9)]);
}

#[test]
fn a_heartbeat_keeps_a_claim_and_a_task_failing_every_attempt_fails_its_batch() {
    let Some((_postgres, url)) = postgres() else {
        return;
    };
    let mut job = WorkQueue::connect(&url, options(300, 2)).unwrap();
    job.open("kept", "k", &json!({}), &[json!(1)]).unwrap();
    let mut worker = WorkQueue::connect(&url, QueueOptions::default()).unwrap();
    let mut other = WorkQueue::connect(&url, QueueOptions::default()).unwrap();
    let heartbeat = worker.heartbeat_thread().unwrap();
    let task = worker.claim("w0", &["k"]).unwrap().unwrap();
    heartbeat.hold(&task, "w0");
    // Three leases long: the heartbeat keeps the claim, so no one else takes the task.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(other.claim("w1", &["k"]).unwrap(), None);
    assert!(!heartbeat.release(), "the lease was kept");
    assert!(worker.complete(&task, "w0", &json!("done")).unwrap());
    assert_eq!(
        job.wait("kept", Duration::from_secs(10), |_| {}).unwrap(),
        [json!("done")]
    );

    job.open("failing", "f", &json!({}), &[json!(1), json!(2)])
        .unwrap();
    for attempt in 1..=2 {
        let task = worker.claim("w0", &["f"]).unwrap().unwrap();
        assert_eq!((task.position, task.attempt), (0, attempt));
        assert!(
            worker
                .fail(&task, "w0", &format!("boom {attempt}"))
                .unwrap()
        );
    }
    let error = job
        .wait("failing", Duration::from_secs(10), |_| {})
        .unwrap_err();
    assert!(
        matches!(
            &error,
            QueueError::TaskFailed { position: 0, attempts: 2, error, .. } if error == "boom 2"
        ),
        "{error}"
    );
    // The batch is cancelled: its other task is no longer handed out.
    assert_eq!(worker.claim("w0", &["f"]).unwrap(), None);
    let batches = worker.batches().unwrap();
    let failing = batches.iter().find(|batch| batch.id == "failing").unwrap();
    assert_eq!(failing.state, "cancelled");
    assert_eq!(failing.tasks.get("failed"), Some(&1));
}
