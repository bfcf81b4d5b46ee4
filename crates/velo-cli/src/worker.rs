//! `velo worker`: a process that runs the tasks jobs put on a PostgreSQL queue.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use clap::Args;
use velo_jobs::executors::Worker;

use crate::commands::Failure;

/// `velo worker` arguments.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The queue's PostgreSQL database (`postgres://user[:password]@host:port/database`), as
    /// the jobs' `executor: {KIND: Queue, url: …}` names it.
    #[arg(long, env = "VELO_QUEUE_URL", value_name = "URL")]
    queue: String,
    /// Stop after this many seconds without a task (run until stopped otherwise).
    #[arg(long, value_name = "SECONDS")]
    idle_exit_s: Option<u64>,
    /// Stop after this many tasks.
    #[arg(long, value_name = "N")]
    max_tasks: Option<usize>,
    /// This worker's name in the queue (host, process id and a random part by default).
    #[arg(long)]
    name: Option<String>,
}

/// Runs tasks until stopped: SIGINT or SIGTERM let the task in hand finish and be answered
/// first (a second signal ends the process; its task is then done again by another worker
/// once its lease lapses).
pub(crate) fn worker(args: &WorkerArgs) -> Result<(), Failure> {
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.subsec_nanos())
            .unwrap_or_default();
        format!("{host}:{}:{nanos:08x}", std::process::id())
    });
    let worker = Worker {
        url: args.queue.clone(),
        name,
        idle_exit: args.idle_exit_s.map(Duration::from_secs),
        max_tasks: args.max_tasks,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let on_stop = {
        let stop = Arc::clone(&stop);
        move || {
            if stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
                eprintln!("interrupted again: the task in hand is left to its lease");
                std::process::exit(130);
            }
            eprintln!("stopping: finishing the task in hand (again to quit at once)");
        }
    };
    crate::commands::watch_stop(on_stop);
    let report = worker
        .run(&stop)
        .map_err(|error| Failure::Job(error.into()))?;
    crate::commands::emit(&format!(
        "worker {} finished: {} tasks done, {} failed, {} results dropped (taken over)\n",
        worker.name, report.done, report.failed, report.dropped
    ))
}
