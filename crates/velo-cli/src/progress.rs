//! Progress bars on stderr for the jobs' steps (indicatif), hidden when stderr is not a
//! terminal.

use std::{fmt, io::IsTerminal as _, time::Duration};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use velo_jobs::progress::{Progress, ProgressStep};

/// Draws one bar (known total) or spinner (unknown total) per step.
pub(crate) struct Bars {
    bars: MultiProgress,
}

impl fmt::Debug for Bars {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Bars")
    }
}

impl Bars {
    /// Bars on stderr when it is a terminal, nothing otherwise.
    pub(crate) fn on_stderr() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            bars: MultiProgress::with_draw_target(target),
        }
    }
}

struct Step(ProgressBar);

impl ProgressStep for Step {
    fn advance(&self, units: u64) {
        self.0.inc(units);
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bars {
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn ProgressStep> {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        let bar = self.bars.add(bar);
        bar.set_message(label.to_owned());
        if total.is_none() {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Box::new(Step(bar))
    }
}
