//! The process's tracing subscriber, configured by a job's `services.logger`.
//!
//! `VELO_LOG` (a tracing filter such as `debug` or `velo_io=trace`) overrides the configured
//! level. Text lines are human-readable; JSON lines carry one object each, with the current
//! span's fields (a job's run id) in every line of the run.

use std::{fs::OpenOptions, io::IsTerminal as _, path::Path, sync::Mutex};

use anyhow::{Context as _, Result};
use tracing_subscriber::{EnvFilter, fmt::writer::BoxMakeWriter};
use velo_io::services::{LogFormat, LoggerService};

/// Installs the subscriber for `config`; only the first call in a process has an effect.
///
/// # Errors
/// A level that is not a tracing filter, or a log file that cannot be opened; both name the
/// configuration key.
pub(crate) fn init(config: &LoggerService) -> Result<()> {
    let filter = match std::env::var("VELO_LOG") {
        Ok(filter) if !filter.trim().is_empty() => EnvFilter::try_new(&filter)
            .with_context(|| format!("VELO_LOG: `{filter}` is not a tracing filter"))?,
        _ => EnvFilter::try_new(&config.level).with_context(|| {
            format!(
                "services.logger.level: `{}` is not a level (error, warn, info, debug, trace) \
                 or a tracing filter",
                config.level
            )
        })?,
    };
    let writer = match config.sink.as_str() {
        "stderr" => BoxMakeWriter::new(std::io::stderr),
        "stdout" => BoxMakeWriter::new(std::io::stdout),
        path => {
            let path = Path::new(path);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!(
                        "services.logger.sink: cannot create the folder {}",
                        parent.display()
                    )
                })?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| {
                    format!(
                        "services.logger.sink: cannot open {} for appending",
                        path.display()
                    )
                })?;
            BoxMakeWriter::new(Mutex::new(file))
        }
    };
    let to_terminal = match config.sink.as_str() {
        "stderr" => std::io::stderr().is_terminal(),
        "stdout" => std::io::stdout().is_terminal(),
        _ => false,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // A second installation (tests calling in one process) is not an error worth stopping for.
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(to_terminal).try_init(),
    };
    Ok(())
}
