//! Where a job's parallel work runs: in this process ([`Local`]), or spread over `velo
//! worker` processes through a PostgreSQL work queue ([`Queue`], see [`velo_io::queue`]).
//!
//! A job with a queue executor opens a batch (its configuration as the shared context, one
//! task per unit of work), waits for the workers and gathers the results in task order, so
//! that what it computes from them is what the local executor would compute: the units are
//! deterministic, and only where they run changes. A [`Worker`] claims tasks of the kinds it
//! knows, runs them with the code the local executor runs, and answers.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use velo_io::queue::{QueueError, QueueOptions, Task, WorkQueue};

use crate::JobError;

/// Where a job's parallel work runs.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "KIND")]
#[non_exhaustive]
pub enum Executor {
    /// In this process, on every core (the default).
    Local(Local),
    /// On `velo worker` processes, through a PostgreSQL work queue.
    Queue(Queue),
}

velo_core::impl_kind_deserialize!(Executor { Local, Queue });

impl Default for Executor {
    fn default() -> Self {
        Self::Local(Local {})
    }
}

impl Executor {
    /// One line for plans and logs (the queue's URL without its password).
    pub fn describe(&self) -> String {
        match self {
            Self::Local(_) => "in this process".to_owned(),
            Self::Queue(queue) => format!(
                "on the workers of the queue {}",
                velo_io::queue::redact(&queue.url)
            ),
        }
    }
}

/// Work runs in this process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Local {}

/// Work runs on `velo worker --queue URL` processes, wherever they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// The PostgreSQL database of the queue (`postgres://user[:password]@host:port/database`);
    /// its tables are created in schema `velo` on first use.
    pub url: String,
    /// Seconds a worker holds a task without a heartbeat; a task whose worker died is done
    /// again by another after this.
    #[serde(default = "Queue::default_lease_s")]
    pub lease_s: u64,
    /// Attempts per task (a lapsed lease counts as one) before the job fails.
    #[serde(default = "Queue::default_max_attempts")]
    pub max_attempts: u32,
    /// The job fails when no task finishes for this many seconds (no worker running?).
    #[serde(default = "Queue::default_stall_s")]
    pub stall_s: u64,
}

impl Queue {
    fn default_lease_s() -> u64 {
        30
    }

    fn default_max_attempts() -> u32 {
        3
    }

    fn default_stall_s() -> u64 {
        600
    }

    /// The options of the queue's connection.
    pub fn options(&self) -> QueueOptions {
        QueueOptions {
            lease: Duration::from_secs(self.lease_s.max(1)),
            max_attempts: i32::try_from(self.max_attempts.max(1)).unwrap_or(i32::MAX),
        }
    }

    /// Opens batch `id` of `kind` and waits for its results, in task order.
    ///
    /// # Errors
    /// The queue cannot be reached, a task failed on every attempt, or no task finished for
    /// `stall_s` seconds.
    pub fn run(
        &self,
        id: &str,
        kind: &str,
        context: &Value,
        payloads: &[Value],
        progress: &dyn crate::progress::Progress,
    ) -> Result<Vec<Value>, JobError> {
        let mut queue = WorkQueue::connect(&self.url, self.options()).map_err(queue_error)?;
        queue
            .open(id, kind, context, payloads)
            .map_err(queue_error)?;
        tracing::info!(
            batch = id,
            tasks = payloads.len(),
            queue = queue.url(),
            "batch opened; waiting for the workers"
        );
        let bar = progress.start(
            &format!("{} {kind} tasks on the queue's workers", payloads.len()),
            Some(payloads.len() as u64),
        );
        let mut done = 0;
        queue
            .wait(id, Duration::from_secs(self.stall_s.max(1)), |now| {
                bar.advance(now.done.saturating_sub(done) as u64);
                done = now.done;
                tracing::debug!(
                    done = now.done,
                    running = now.running,
                    total = now.total,
                    "batch progress"
                );
            })
            .map_err(queue_error)
    }
}

/// A queue error as a job error.
pub(crate) fn queue_error(error: QueueError) -> JobError {
    JobError::Runtime {
        action: "use the work queue".to_owned(),
        source: Box::new(error),
    }
}

/// Task kinds a worker knows, with the function that runs each.
pub const KINDS: [&str; 2] = [crate::tuning::TASK_KIND, crate::inference::TASK_KIND];

/// What a worker prepared for a batch (data read once, shared by the batch's tasks).
enum Prepared {
    Tuning(Box<crate::tuning::Prepared>),
    Inference(Box<crate::inference::Prepared>),
}

/// A `velo worker`: claims tasks from a queue, one at a time, until stopped or idle.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The queue's URL.
    pub url: String,
    /// This worker's name in the queue (host, process and a random part by default).
    pub name: String,
    /// Stop after this long without a task (run until stopped when absent).
    pub idle_exit: Option<Duration>,
    /// Stop after this many tasks.
    pub max_tasks: Option<usize>,
}

/// What a worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Tasks done and accepted.
    pub done: usize,
    /// Tasks that failed (given back for another attempt, or failed for good).
    pub failed: usize,
    /// Results dropped because the task had been taken over (a lapsed lease).
    pub dropped: usize,
}

impl Worker {
    /// Claims and runs tasks until `stop` is set, `idle_exit` passes without a task or
    /// `max_tasks` are run. A task's error is given back to the queue (and logged), never
    /// ending the worker; only the queue's own errors do.
    ///
    /// # Errors
    /// The queue cannot be reached or refuses an update.
    pub fn run(&self, stop: &AtomicBool) -> Result<WorkerReport, JobError> {
        // Leases and attempts are the batches' own (each task says them).
        let mut queue =
            WorkQueue::connect(&self.url, QueueOptions::default()).map_err(queue_error)?;
        tracing::info!(worker = %self.name, queue = queue.url(), kinds = %KINDS.join(","), "worker started");
        let heartbeat = queue.heartbeat_thread().map_err(queue_error)?;
        let mut report = WorkerReport::default();
        let mut prepared: Option<(String, Value, Prepared)> = None;
        let mut idle_since = Instant::now();
        while !stop.load(Ordering::SeqCst)
            && self
                .max_tasks
                .is_none_or(|max| report.done + report.failed < max)
        {
            let Some(task) = queue.claim(&self.name, &KINDS).map_err(queue_error)? else {
                if self
                    .idle_exit
                    .is_some_and(|idle| idle_since.elapsed() >= idle)
                {
                    tracing::info!(worker = %self.name, "no task for a while: stopping");
                    break;
                }
                queue
                    .wait_for_work(Duration::from_millis(500))
                    .map_err(queue_error)?;
                continue;
            };
            tracing::info!(worker = %self.name, batch = %task.batch, task = task.position, attempt = task.attempt, kind = %task.kind, "task claimed");
            heartbeat.hold(&task, &self.name);
            let outcome = self.execute(&mut queue, &task, &mut prepared);
            let lost = heartbeat.release();
            match outcome {
                Ok(result) => {
                    if !lost
                        && queue
                            .complete(&task, &self.name, &result)
                            .map_err(queue_error)?
                    {
                        report.done += 1;
                    } else {
                        report.dropped += 1;
                        tracing::warn!(worker = %self.name, batch = %task.batch, task = task.position, "the task was taken over while it ran (its lease lapsed): its result is dropped");
                    }
                }
                Err(error) => {
                    report.failed += 1;
                    let text = chain(&error);
                    tracing::warn!(worker = %self.name, batch = %task.batch, task = task.position, error = %text, "task failed; given back");
                    queue.fail(&task, &self.name, &text).map_err(queue_error)?;
                }
            }
            idle_since = Instant::now();
        }
        Ok(report)
    }

    fn execute(
        &self,
        queue: &mut WorkQueue,
        task: &Task,
        prepared: &mut Option<(String, Value, Prepared)>,
    ) -> Result<Value, JobError> {
        if prepared
            .as_ref()
            .is_none_or(|(batch, _, _)| *batch != task.batch)
        {
            let context = queue.context(&task.batch).map_err(queue_error)?;
            // Batches with the same context (a halving search's rounds) share what was read.
            if let Some((batch, shared, _)) = prepared.as_mut()
                && *shared == context
            {
                *batch = task.batch.clone();
            } else {
                *prepared = None;
                let ready = match task.kind.as_str() {
                    crate::tuning::TASK_KIND => {
                        Prepared::Tuning(Box::new(crate::tuning::Prepared::from_context(&context)?))
                    }
                    crate::inference::TASK_KIND => Prepared::Inference(Box::new(
                        crate::inference::Prepared::from_context(&context)?,
                    )),
                    other => {
                        return Err(JobError::Config(format!(
                            "this worker cannot run tasks of kind `{other}` (it knows {})",
                            KINDS.join(", ")
                        )));
                    }
                };
                *prepared = Some((task.batch.clone(), context, ready));
            }
        }
        match prepared.as_ref().map(|(_, _, ready)| ready) {
            Some(Prepared::Tuning(tuning)) => tuning.run_task(&task.payload),
            Some(Prepared::Inference(inference)) => inference.run_task(&task.payload),
            None => Err(JobError::Config("no batch prepared".to_owned())),
        }
    }
}

/// An error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
