//! The work queue's throughput: `--workers` threads, each with its own connection (as
//! `velo worker` processes have), claim and complete `--tasks` trivial tasks of one batch
//! opened on the PostgreSQL database `--url`; prints one JSON object. `cargo xtask bench
//! --queue` starts PostgreSQL and runs this beside Optuna's `RDBStorage` on the same server.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a bench binary reports on stdout and stops on any failure"
)]

use std::time::{Duration, Instant};

use velo_io::queue::{QueueOptions, WorkQueue};

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut url, mut tasks, mut workers) = (None, 2_000_usize, 2_usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next(),
            "--tasks" => tasks = args.next().and_then(|n| n.parse().ok()).expect("--tasks N"),
            "--workers" => {
                workers = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--workers N");
            }
            // cargo bench passes `--bench`.
            _ => {}
        }
    }
    let url = url.expect("--url postgres://…");
    let options = QueueOptions {
        lease: Duration::from_secs(30),
        max_attempts: 3,
    };
    let mut queue = WorkQueue::connect(&url, options).unwrap();
    let batch = format!("bench-{}", std::process::id());
    let payloads: Vec<serde_json::Value> =
        (0..tasks).map(|i| serde_json::json!({"x": i})).collect();
    let started = Instant::now();
    queue
        .open(&batch, "bench", &serde_json::json!({}), &payloads)
        .unwrap();
    let opened = started.elapsed();
    let handles: Vec<_> = (0..workers)
        .map(|index| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut queue = WorkQueue::connect(&url, options).unwrap();
                let heartbeat = queue.heartbeat_thread().unwrap();
                let name = format!("bench-{index}");
                let mut done = 0_usize;
                while let Some(task) = queue.claim(&name, &["bench"]).unwrap() {
                    heartbeat.hold(&task, &name);
                    // The trivial objective: x squared.
                    let x = task.payload["x"].as_f64().unwrap_or_default();
                    let lost = heartbeat.release();
                    assert!(!lost);
                    assert!(
                        queue
                            .complete(&task, &name, &serde_json::json!({"value": x * x}))
                            .unwrap()
                    );
                    done += 1;
                }
                done
            })
        })
        .collect();
    let done: usize = handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .sum();
    let results = queue.wait(&batch, Duration::from_secs(60), |_| {}).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!((done, results.len()), (tasks, tasks));
    println!(
        "{}",
        serde_json::json!({
            "tasks": tasks,
            "workers": workers,
            "open_seconds": opened.as_secs_f64(),
            "seconds": seconds,
            "tasks_per_second": tasks as f64 / seconds,
        })
    );
}
