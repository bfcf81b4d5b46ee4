//! A work queue in PostgreSQL: no coordinator process, only rows.
//!
//! A job that spreads its work (a tuning job's candidates × folds, an inference job's
//! partitions) opens a **batch**: one row holding what every task shares (the job's
//! configuration), and one row per task holding what is its own. Workers (`velo worker
//! --queue postgres://…`) claim the oldest claimable task with `SELECT … FOR UPDATE SKIP
//! LOCKED`, so two workers never take the same task and never wait on each other; a claim is
//! a **lease** that the worker's heartbeat extends. A worker that dies stops its heartbeat: once
//! its lease lapses, the task is claimable again and another worker does it (at most
//! `max_attempts` times in all; then it is failed). A result is accepted only from the worker
//! that holds the task, so a late answer from a worker presumed dead is dropped and never
//! overwrites the result of the worker that redid it.
//!
//! The job that opened the batch waits for it ([`WorkQueue::wait`]), gathers the results in
//! task order and closes it. Tables live in the `velo` schema, created on first use.
//!
//! Connections are plain TCP (`postgres://user@host:port/database`, PostgreSQL's URL format);
//! the connection string's password, if any, is never printed.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use postgres::{Client, NoTls};
use serde_json::Value;

/// A queue operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// PostgreSQL refused or could not be reached.
    #[error("the work queue at {url}: cannot {action}: {source}")]
    Database {
        /// The queue's URL, without its password.
        url: String,
        /// What was being done.
        action: String,
        /// PostgreSQL's error.
        #[source]
        source: postgres::Error,
    },
    /// A task failed on every attempt, or its batch was cancelled.
    #[error("task {position} of batch {batch} failed after {attempts} attempt(s): {error}")]
    TaskFailed {
        /// The batch.
        batch: String,
        /// The task's position in its batch.
        position: i32,
        /// Attempts made.
        attempts: i32,
        /// The last attempt's error.
        error: String,
    },
    /// No worker made progress on a batch for longer than the wait allows.
    #[error(
        "batch {batch}: no task finished for {seconds} s ({done} of {total} done); are workers running (`velo worker --queue …`)?"
    )]
    Stalled {
        /// The batch.
        batch: String,
        /// Tasks done.
        done: usize,
        /// Tasks in all.
        total: usize,
        /// Seconds waited without progress.
        seconds: u64,
    },
    /// A stored value is not what velo wrote.
    #[error("the work queue at {url}: {what}")]
    Corrupt {
        /// The queue's URL, without its password.
        url: String,
        /// What is wrong.
        what: String,
    },
}

/// The result type of the queue.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// How the tasks of a batch are retried and how long a claim on one lasts (set when the batch
/// is opened; workers follow what each task says).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueOptions {
    /// How long a claim lasts without a heartbeat (workers beat three times per lease).
    pub lease: Duration,
    /// Attempts per task before it is failed (a lapsed lease counts as one).
    pub max_attempts: i32,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            max_attempts: 3,
        }
    }
}

/// A claimed task: the worker that holds it must [`WorkQueue::complete`] or
/// [`WorkQueue::fail`] it while its lease lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The task's row.
    pub id: i64,
    /// Its batch.
    pub batch: String,
    /// What the task is (`tuning`, `inference`, …): which worker code runs it.
    pub kind: String,
    /// Its position in the batch (results are gathered in this order).
    pub position: i32,
    /// What is its own.
    pub payload: Value,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// How long the claim lasts without a heartbeat.
    pub lease: Duration,
}

/// Where a batch stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Tasks in all.
    pub total: usize,
    /// Tasks done.
    pub done: usize,
    /// Tasks held by a worker now.
    pub running: usize,
    /// Tasks failed for good.
    pub failed: usize,
}

/// A connection to the queue.
pub struct WorkQueue {
    client: Client,
    /// The connection string as given (it may hold a password).
    dsn: String,
    /// The connection string without its password, for messages.
    url: String,
    options: QueueOptions,
}

impl std::fmt::Debug for WorkQueue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WorkQueue")
            .field("url", &self.url)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// `url` without the password of its user part.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Turns a PostgreSQL error into a [`QueueError::Database`] saying what was being done.
fn failing(url: &str, action: String) -> impl FnOnce(postgres::Error) -> QueueError + use<> {
    let url = url.to_owned();
    move |source| QueueError::Database {
        url,
        action,
        source,
    }
}

/// Serializes schema creation between processes (an arbitrary constant).
const MIGRATION_LOCK: i64 = 0x7665_6c6f_7175_6575;

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS velo;
CREATE TABLE IF NOT EXISTS velo.batches (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    context JSONB NOT NULL,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'cancelled')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS velo.tasks (
    id BIGSERIAL PRIMARY KEY,
    batch TEXT NOT NULL REFERENCES velo.batches (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    position INT NOT NULL,
    payload JSONB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts INT NOT NULL DEFAULT 0,
    max_attempts INT NOT NULL,
    lease_s DOUBLE PRECISION NOT NULL,
    worker TEXT,
    lease_until TIMESTAMPTZ,
    result JSONB,
    error TEXT,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    UNIQUE (batch, position)
);
CREATE INDEX IF NOT EXISTS tasks_open ON velo.tasks (id) WHERE state IN ('pending', 'running');
";

/// The channel workers listen on: a batch opened wakes them at once.
const CHANNEL: &str = "velo_tasks";

impl WorkQueue {
    /// Connects to the queue at `url` and creates its tables when they are missing.
    pub fn connect(url: &str, options: QueueOptions) -> Result<Self> {
        let shown = redact(url);
        let client = Client::connect(url, NoTls).map_err(|source| QueueError::Database {
            url: shown.clone(),
            action: "connect (is PostgreSQL running there, and the database created?)".to_owned(),
            source,
        })?;
        let mut queue = Self {
            client,
            dsn: url.to_owned(),
            url: shown,
            options,
        };
        queue.migrate()?;
        Ok(queue)
    }

    /// The queue's URL without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The options given at connection.
    pub fn options(&self) -> QueueOptions {
        self.options
    }

    fn database(&self, action: &str) -> impl FnOnce(postgres::Error) -> QueueError + use<> {
        failing(&self.url, action.to_owned())
    }

    fn migrate(&mut self) -> Result<()> {
        let url = self.url.clone();
        let fail = |action: &str| failing(&url, action.to_owned());
        let mut transaction = self
            .client
            .transaction()
            .map_err(fail("begin the schema's creation"))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(fail("lock the schema's creation"))?;
        transaction
            .batch_execute(SCHEMA)
            .map_err(fail("create the queue's tables in schema `velo`"))?;
        transaction
            .commit()
            .map_err(fail("commit the schema's creation"))
    }

    /// Opens batch `id` of `kind`: `context` is what every task shares, `payloads` each task's
    /// own part, in order. Workers are woken at once.
    pub fn open(
        &mut self,
        id: &str,
        kind: &str,
        context: &Value,
        payloads: &[Value],
    ) -> Result<()> {
        let max_attempts = self.options.max_attempts.max(1);
        let lease = self.options.lease.as_secs_f64().max(0.001);
        let url = self.url.clone();
        let fail = |action: String| failing(&url, action);
        let mut transaction = self
            .client
            .transaction()
            .map_err(fail("begin a batch".to_owned()))?;
        transaction
            .execute(
                "INSERT INTO velo.batches (id, kind, context) VALUES ($1, $2, $3)",
                &[&id, &kind, context],
            )
            .map_err(fail(format!("open batch {id}")))?;
        let statement = transaction
            .prepare(
                "INSERT INTO velo.tasks (batch, kind, position, payload, max_attempts, lease_s)
                 SELECT $1, $2, position::INT - 1, payload, $4, $5
                 FROM unnest($3::JSONB[]) WITH ORDINALITY AS t(payload, position)",
            )
            .map_err(fail("prepare the tasks' insertion".to_owned()))?;
        transaction
            .execute(&statement, &[&id, &kind, &payloads, &max_attempts, &lease])
            .map_err(fail(format!(
                "enqueue the {} tasks of batch {id}",
                payloads.len()
            )))?;
        transaction
            .execute(&format!("NOTIFY {CHANNEL}"), &[])
            .map_err(fail("wake the workers".to_owned()))?;
        transaction
            .commit()
            .map_err(fail(format!("commit batch {id}")))
    }

    /// The shared context of batch `id`.
    pub fn context(&mut self, id: &str) -> Result<Value> {
        let row = self
            .client
            .query_opt("SELECT context FROM velo.batches WHERE id = $1", &[&id])
            .map_err(self.database(&format!("read batch {id}")))?;
        row.map(|row| row.get::<_, Value>(0))
            .ok_or_else(|| QueueError::Corrupt {
                url: self.url.clone(),
                what: format!("batch {id} has tasks but no row in velo.batches"),
            })
    }

    /// Claims the oldest claimable task of one of `kinds` for `worker`: a pending one, or one
    /// whose holder's lease lapsed and that has attempts left. `None` when there is none.
    pub fn claim(&mut self, worker: &str, kinds: &[&str]) -> Result<Option<Task>> {
        let kinds: Vec<String> = kinds.iter().map(|kind| (*kind).to_owned()).collect();
        let row = self
            .client
            .query_opt(
                "WITH next AS (
                     SELECT t.id FROM velo.tasks t JOIN velo.batches b ON b.id = t.batch
                     WHERE b.state = 'open' AND t.kind = ANY($2)
                       AND (t.state = 'pending'
                            OR (t.state = 'running' AND t.lease_until < now()
                                AND t.attempts < t.max_attempts))
                     ORDER BY t.id
                     FOR UPDATE OF t SKIP LOCKED
                     LIMIT 1)
                 UPDATE velo.tasks t
                 SET state = 'running', worker = $1, attempts = t.attempts + 1,
                     lease_until = now() + make_interval(secs => t.lease_s), started_at = now()
                 FROM next WHERE t.id = next.id
                 RETURNING t.id, t.batch, t.kind, t.position, t.payload, t.attempts, t.lease_s",
                &[&worker, &kinds],
            )
            .map_err(self.database("claim a task"))?;
        Ok(row.map(|row| Task {
            id: row.get(0),
            batch: row.get(1),
            kind: row.get(2),
            position: row.get(3),
            payload: row.get(4),
            attempt: row.get(5),
            lease: Duration::from_secs_f64(row.get::<_, f64>(6).max(0.001)),
        }))
    }

    /// Stores the result of `task`; `false` when `worker` no longer holds it (its lease lapsed
    /// and another worker claimed it, or its batch was cancelled): the result is dropped.
    pub fn complete(&mut self, task: &Task, worker: &str, result: &Value) -> Result<bool> {
        let updated = self
            .client
            .execute(
                "UPDATE velo.tasks SET state = 'done', result = $3, finished_at = now(),
                     lease_until = NULL
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&task.id, &worker, result],
            )
            .map_err(self.database(&format!("store the result of task {}", task.id)))?;
        Ok(updated == 1)
    }

    /// Gives `task` back after an error: claimable again while it has attempts left, failed
    /// for good after that. `false` when `worker` no longer holds it.
    pub fn fail(&mut self, task: &Task, worker: &str, error: &str) -> Result<bool> {
        let updated = self
            .client
            .execute(
                "UPDATE velo.tasks
                 SET state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
                     error = $3, worker = NULL, lease_until = NULL, finished_at = now()
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&task.id, &worker, &error],
            )
            .map_err(self.database(&format!("give task {} back", task.id)))?;
        Ok(updated == 1)
    }

    /// Extends the lease of `task`; `false` when `worker` no longer holds it.
    pub fn heartbeat(&mut self, task: i64, worker: &str) -> Result<bool> {
        let updated = self
            .client
            .execute(
                "UPDATE velo.tasks SET lease_until = now() + make_interval(secs => lease_s)
                 WHERE id = $1 AND worker = $2 AND state = 'running'",
                &[&task, &worker],
            )
            .map_err(self.database(&format!("extend the lease of task {task}")))?;
        Ok(updated == 1)
    }

    /// Starts the heartbeat of this connection's worker: a thread that extends the lease of
    /// the task it is told to [`Heartbeat::hold`], three times per lease, on a connection of
    /// its own (opened the first time a task lasts long enough to need a beat).
    pub fn heartbeat_thread(&self) -> Result<Heartbeat> {
        let held: Arc<std::sync::Mutex<Option<Held>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (held, stop) = (Arc::clone(&held), Arc::clone(&stop));
            let (url, shown, options) = (self.dsn.clone(), self.url.clone(), self.options);
            std::thread::Builder::new()
                .name("velo-heartbeat".to_owned())
                .spawn(move || {
                    let mut queue: Option<Self> = None;
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                        let due = held.lock().ok().and_then(|held| {
                            held.as_ref()
                                .filter(|held| !held.lost && held.beat.elapsed() >= held.every)
                                .map(|held| (held.task, held.worker.clone()))
                        });
                        let Some((task, worker)) = due else {
                            continue;
                        };
                        if queue.is_none() {
                            match Client::connect(&url, NoTls) {
                                Ok(client) => {
                                    queue = Some(Self {
                                        client,
                                        dsn: url.clone(),
                                        url: shown.clone(),
                                        options,
                                    });
                                }
                                Err(error) => {
                                    tracing::warn!(%error, task, "the heartbeat cannot connect");
                                }
                            }
                        }
                        let Some(connection) = queue.as_mut() else {
                            continue;
                        };
                        let beat = connection.heartbeat(task, &worker);
                        if let Ok(mut held) = held.lock()
                            && let Some(held) = held.as_mut().filter(|held| held.task == task)
                        {
                            held.beat = Instant::now();
                            match beat {
                                Ok(true) => {}
                                Ok(false) => held.lost = true,
                                // A missed beat is not a lost lease: the next one may pass.
                                Err(error) => tracing::warn!(%error, task, "a heartbeat failed"),
                            }
                        }
                    }
                })
                .map_err(|error| QueueError::Corrupt {
                    url: self.url.clone(),
                    what: format!("cannot start a heartbeat thread: {error}"),
                })?
        };
        Ok(Heartbeat {
            held,
            stop,
            thread: Some(thread),
        })
    }

    /// Where batch `id` stands. Tasks whose lease lapsed with no attempt left are failed here.
    pub fn progress(&mut self, id: &str) -> Result<Progress> {
        self.client
            .execute(
                "UPDATE velo.tasks SET state = 'failed', worker = NULL, lease_until = NULL,
                     error = COALESCE(error || '; ', '') || 'the lease of its last attempt lapsed (a worker died or stalled)'
                 WHERE batch = $1 AND state = 'running' AND lease_until < now()
                   AND attempts >= max_attempts",
                &[&id],
            )
            .map_err(self.database(&format!("fail the stale tasks of batch {id}")))?;
        let row = self
            .client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE state = 'done'),
                        count(*) FILTER (WHERE state = 'running'),
                        count(*) FILTER (WHERE state = 'failed')
                 FROM velo.tasks WHERE batch = $1",
                &[&id],
            )
            .map_err(self.database(&format!("count the tasks of batch {id}")))?;
        let count = |index: usize| usize::try_from(row.get::<_, i64>(index)).unwrap_or(0);
        Ok(Progress {
            total: count(0),
            done: count(1),
            running: count(2),
            failed: count(3),
        })
    }

    /// Waits until every task of batch `id` is done and returns their results in task order,
    /// then closes the batch. `on_progress` hears every change; the wait fails on a task
    /// failed for good (cancelling the rest), and after `stall` without any task finished.
    pub fn wait(
        &mut self,
        id: &str,
        stall: Duration,
        mut on_progress: impl FnMut(Progress),
    ) -> Result<Vec<Value>> {
        let mut last = Progress::default();
        let mut moved = Instant::now();
        loop {
            let progress = self.progress(id)?;
            if progress != last {
                if progress.done != last.done {
                    moved = Instant::now();
                }
                on_progress(progress);
                last = progress;
            }
            if progress.failed > 0 {
                let row = self
                    .client
                    .query_one(
                        "SELECT position, attempts, COALESCE(error, '') FROM velo.tasks
                         WHERE batch = $1 AND state = 'failed' ORDER BY position LIMIT 1",
                        &[&id],
                    )
                    .map_err(self.database(&format!("read the failed task of batch {id}")))?;
                self.cancel(id)?;
                return Err(QueueError::TaskFailed {
                    batch: id.to_owned(),
                    position: row.get(0),
                    attempts: row.get(1),
                    error: row.get(2),
                });
            }
            if progress.done == progress.total {
                break;
            }
            if moved.elapsed() > stall {
                self.cancel(id)?;
                return Err(QueueError::Stalled {
                    batch: id.to_owned(),
                    done: progress.done,
                    total: progress.total,
                    seconds: stall.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let rows = self
            .client
            .query(
                "SELECT position, result FROM velo.tasks WHERE batch = $1 ORDER BY position",
                &[&id],
            )
            .map_err(self.database(&format!("gather the results of batch {id}")))?;
        let mut results = Vec::with_capacity(rows.len());
        for (expected, row) in rows.iter().enumerate() {
            let position: i32 = row.get(0);
            let result: Option<Value> = row.get(1);
            match result {
                Some(result) if usize::try_from(position).ok() == Some(expected) => {
                    results.push(result);
                }
                _ => {
                    return Err(QueueError::Corrupt {
                        url: self.url.clone(),
                        what: format!("batch {id}: task {expected} has no result"),
                    });
                }
            }
        }
        self.client
            .execute(
                "UPDATE velo.batches SET state = 'closed' WHERE id = $1",
                &[&id],
            )
            .map_err(self.database(&format!("close batch {id}")))?;
        Ok(results)
    }

    /// Cancels batch `id`: its tasks are no longer claimed, and results still coming are
    /// dropped.
    pub fn cancel(&mut self, id: &str) -> Result<()> {
        self.client
            .execute(
                "UPDATE velo.batches SET state = 'cancelled' WHERE id = $1 AND state = 'open'",
                &[&id],
            )
            .map_err(self.database(&format!("cancel batch {id}")))?;
        Ok(())
    }

    /// Waits at most `timeout` for a batch to be opened (returns at once on a notification).
    pub fn wait_for_work(&mut self, timeout: Duration) -> Result<()> {
        self.client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(self.database("listen for new batches"))?;
        use postgres::fallible_iterator::FallibleIterator as _;
        let fail = self.database("wait for new batches");
        let mut notifications = self.client.notifications();
        let mut waiting = notifications.timeout_iter(timeout);
        let _ = waiting.next().map_err(fail)?;
        Ok(())
    }

    /// Every batch, oldest first, with its tasks counted by state.
    pub fn batches(&mut self) -> Result<Vec<BatchSummary>> {
        let rows = self
            .client
            .query(
                "SELECT b.id, b.kind, b.state, t.state, count(t.id)
                 FROM velo.batches b LEFT JOIN velo.tasks t ON t.batch = b.id
                 GROUP BY b.id, b.kind, b.state, t.state, b.created_at
                 ORDER BY b.created_at, b.id",
                &[],
            )
            .map_err(self.database("list the batches"))?;
        let mut batches: Vec<BatchSummary> = Vec::new();
        for row in rows {
            let id: String = row.get(0);
            if batches.last().is_none_or(|last| last.id != id) {
                batches.push(BatchSummary {
                    id: id.clone(),
                    kind: row.get(1),
                    state: row.get(2),
                    tasks: BTreeMap::new(),
                });
            }
            if let (Some(state), Some(last)) = (row.get::<_, Option<String>>(3), batches.last_mut())
            {
                last.tasks
                    .insert(state, usize::try_from(row.get::<_, i64>(4)).unwrap_or(0));
            }
        }
        Ok(batches)
    }
}

/// A batch as [`WorkQueue::batches`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    /// The batch's id (the job's run id and what it spreads, for velo's jobs).
    pub id: String,
    /// The kind of its tasks.
    pub kind: String,
    /// `open`, `closed` (its results gathered) or `cancelled`.
    pub state: String,
    /// Its tasks counted by state (`pending`, `running`, `done`, `failed`).
    pub tasks: BTreeMap<String, usize>,
}

/// The task a heartbeat keeps.
#[derive(Debug)]
struct Held {
    task: i64,
    worker: String,
    every: Duration,
    beat: Instant,
    lost: bool,
}

/// A worker's heartbeat (see [`WorkQueue::heartbeat_thread`]); it stops when dropped.
#[derive(Debug)]
pub struct Heartbeat {
    held: Arc<std::sync::Mutex<Option<Held>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Keeps `task`'s lease, held by `worker`, alive from now on.
    pub fn hold(&self, task: &Task, worker: &str) {
        if let Ok(mut held) = self.held.lock() {
            *held = Some(Held {
                task: task.id,
                worker: worker.to_owned(),
                every: (task.lease / 3).max(Duration::from_millis(50)),
                beat: Instant::now(),
                lost: false,
            });
        }
    }

    /// Stops beating for the task held; `true` when its lease was found taken over meanwhile
    /// (its result will be dropped).
    pub fn release(&self) -> bool {
        self.held
            .lock()
            .ok()
            .and_then(|mut held| held.take())
            .is_some_and(|held| held.lost)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
