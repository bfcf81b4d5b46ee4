//! Progress reporting: jobs say what they are doing and how far they are; the caller decides
//! how to show it (the CLI draws progress bars on a terminal, embedders may ignore it).

use std::fmt;

/// Where a job reports its progress.
pub trait Progress: fmt::Debug + Send + Sync {
    /// Starts a step called `label`, of `total` units when known (rows, candidates × folds).
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn ProgressStep>;
}

/// One step in progress; dropping it ends it.
pub trait ProgressStep: Send + Sync {
    /// Marks `units` more as done.
    fn advance(&self, units: u64);
}

/// Reports nothing: the default for embedders and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

struct Silent;

impl ProgressStep for Silent {
    fn advance(&self, _units: u64) {}
}

impl Progress for NoProgress {
    fn start(&self, _label: &str, _total: Option<u64>) -> Box<dyn ProgressStep> {
        Box::new(Silent)
    }
}
