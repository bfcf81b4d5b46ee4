//! `cargo xtask bench --serve [--runs N] [--data-dir DIR]`: `velo serve` next to MLflow's own
//! `mlflow models serve`, under the same loopback load, for 1-row and 1000-row requests.
//!
//! Both serve the same forest (200 trees of depth 20, fitted on the same rows with the same
//! parity features): velo's from `configs/parity/training.yaml`, MLflow's the scikit-learn
//! pipeline of `../shared/bench/sklearn_baseline.py`, logged with `mlflow.sklearn` and served
//! with `--env-manager local` as shipped (`xtask/assets/mlflow_serve_model.py`). Both get the
//! same request bodies, pandas' `to_json(orient="split")` of the first test rows, from wrk
//! (Debian's package, installed on first use) with 2 threads and 8 connections. velo is also
//! loaded with `--log-predictions` (every request written to Parquet), which must keep 90% of
//! its 1-row throughput.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{python, root, run};

/// Seconds of load per server and payload.
const SECONDS: u64 = 10;

/// One measured load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Load {
    pub(crate) requests_per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

/// A server process group, ended on drop.
pub(crate) type Server = velo_child::ChildServer;

pub(crate) fn free_port() -> Result<u16> {
    Ok(velo_child::free_port()?)
}

/// Starts `command` in its own process group, logging to `log`, and waits for `/ping`.
pub(crate) fn start(command: &mut Command, port: u16, log: &Path) -> Result<Server> {
    Ok(velo_child::ChildServer::start_within(
        "the server",
        command,
        port,
        log,
        velo_child::Ready::Http("/ping"),
        Duration::from_secs(180),
    )?)
}

/// Checks one request answers 200 with `rows` predictions.
fn check_answer(port: u16, body: &Path, rows: usize) -> Result<()> {
    let output = Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
        ])
        .arg(format!("@{}", body.display()))
        .arg(format!("http://127.0.0.1:{port}/invocations"))
        .output()?;
    if !output.status.success() {
        bail!("a request to port {port} failed");
    }
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let got = answer["predictions"].as_array().map_or(0, Vec::len);
    if got != rows {
        bail!("port {port} answered {got} predictions for {rows} rows");
    }
    Ok(())
}

/// Runs wrk against `port` with `body` for [`SECONDS`].
fn load(port: u16, body: &Path, dir: &Path) -> Result<Load> {
    let script = dir.join(format!(
        "{}.lua",
        body.file_stem().and_then(|s| s.to_str()).unwrap_or("body")
    ));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nlocal f = io.open(\"{}\", \"rb\")\nwrk.body = f:read(\"*a\")\nf:close()\n",
            body.display()
        ),
    )?;
    let url = format!("http://127.0.0.1:{port}/invocations");
    let wrk = |seconds: u64| {
        Command::new("wrk")
            .args(["-t2", "-c8", "--latency", "-d"])
            .arg(format!("{seconds}s"))
            .arg("-s")
            .arg(&script)
            .arg(&url)
            .output()
            .context("cannot run wrk")
    };
    // A short warm-up, then the measured load.
    wrk(2)?;
    let output = wrk(SECONDS)?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_wrk(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
}

/// Requests/s and the 50th and 99th latency percentiles from `wrk --latency`.
pub(crate) fn parse_wrk(text: &str) -> Option<Load> {
    let duration_ms = |value: &str| -> Option<f64> {
        let value = value.trim();
        let split = value.find(|c: char| c.is_ascii_alphabetic())?;
        let (number, unit) = value.split_at(split);
        let number: f64 = number.parse().ok()?;
        Some(match unit {
            "us" => number / 1000.0,
            "ms" => number,
            "s" => number * 1000.0,
            "m" => number * 60_000.0,
            _ => return None,
        })
    };
    let percentile = |label: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .and_then(duration_ms)
    };
    let requests_per_second = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    if text.contains("Non-2xx or 3xx responses") {
        return None;
    }
    Some(Load {
        requests_per_second,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
    })
}

/// Runs the comparison and prints the table.
pub(crate) fn compare(data_dir: &Path, runs: usize) -> Result<()> {
    if !cfg!(unix) {
        bail!("the serving benchmark runs on Unix only");
    }
    ensure_wrk()?;
    let rows = in_scratch("serve-bench", data_dir, |velo, data_dir, scratch| {
        measure_all(velo, data_dir, scratch, runs)
    })?;
    print!("{}", table(&rows, runs));
    Ok(())
}

/// Medians per payload size.
struct Row {
    rows: usize,
    velo: Load,
    /// velo with `--log-predictions`.
    logged: Load,
    mlflow: Load,
}

type Rows = Vec<Row>;

fn measure_all(velo: &Path, data_dir: &Path, scratch: &Path, runs: usize) -> Result<Rows> {
    // velo's project: the parity model, registered with the Champion alias.
    let project = velo_project(velo, data_dir, scratch, "configs/parity/training.yaml")?;
    // MLflow's: the reference pipeline in a SQLite store, and the request bodies.
    let tracking = mlflow_model(data_dir, scratch)?;

    let mut measured: Vec<(usize, [Vec<Load>; 3])> = [1, 1000]
        .into_iter()
        .map(|rows| (rows, Default::default()))
        .collect();
    for run_index in 1..=runs {
        eprintln!("xtask: serving run {run_index} of {runs}");
        // velo without, then with its prediction log (every request written to Parquet).
        for (slot, log) in [
            (0, None),
            (1, Some(scratch.join(format!("logs-{run_index}")))),
        ] {
            let port = free_port()?;
            let mut command = Command::new(velo);
            command
                .args([
                    "serve",
                    "-m",
                    "models:/bikes@Champion",
                    "-p",
                    &port.to_string(),
                ])
                .current_dir(&project)
                .env_remove("MLFLOW_TRACKING_URI")
                .env_remove("MLFLOW_REGISTRY_URI");
            if let Some(log) = &log {
                command.arg("--log-predictions").arg(log);
            }
            let velo_server = start(&mut command, port, &scratch.join("velo-serve.log"))?;
            for (rows, loads) in &mut measured {
                let body = scratch.join(format!("body_{rows}.json"));
                check_answer(port, &body, *rows)?;
                loads[slot].push(load(port, &body, scratch)?);
            }
            drop(velo_server);
        }

        let (mlflow_server, port) = mlflow_server(scratch, &tracking)?;
        for (rows, loads) in &mut measured {
            let body = scratch.join(format!("body_{rows}.json"));
            check_answer(port, &body, *rows)?;
            loads[2].push(load(port, &body, scratch)?);
        }
        drop(mlflow_server);
    }
    Ok(measured
        .into_iter()
        .map(|(rows, [velo, logged, mlflow])| Row {
            rows,
            velo: median(&velo),
            logged: median(&logged),
            mlflow: median(&mlflow),
        })
        .collect())
}

/// A velo project in `scratch/velo`: the data linked, the configs copied, and a model
/// trained with `training` and promoted to Champion.
pub(crate) fn velo_project(
    velo: &Path,
    data_dir: &Path,
    scratch: &Path,
    training: &str,
) -> Result<std::path::PathBuf> {
    let project = scratch.join("velo");
    std::fs::create_dir_all(&project)?;
    super::chain::link_dir(data_dir, &project.join("data"))?;
    super::chain::copy_dir(&root().join("configs"), &project.join("configs"))?;
    for config in [training, "configs/promotion.yaml"] {
        in_dir(
            Command::new(velo)
                .args(["run", config])
                .env_remove("MLFLOW_TRACKING_URI")
                .env_remove("MLFLOW_REGISTRY_URI"),
            &project,
        )?;
    }
    Ok(project)
}

/// The reference harness's forest logged with `mlflow.sklearn` into a SQLite store in
/// `scratch/mlflow` and registered as `bikes@Champion` (with the request bodies in `scratch`);
/// returns the store's URI.
fn mlflow_model(data_dir: &Path, scratch: &Path) -> Result<String> {
    let reference = scratch.join("mlflow");
    std::fs::create_dir_all(&reference)?;
    let tracking = format!("sqlite:///{}", reference.join("mlflow.db").display());
    in_dir(
        Command::new(python::venv_python(&root()))
            .arg(root().join("xtask/assets/mlflow_serve_model.py"))
            .arg(data_dir)
            .arg(&tracking)
            .arg(scratch),
        &reference,
    )?;
    Ok(tracking)
}

/// `mlflow models serve` of the model [`mlflow_model`] registered, on a free port.
fn mlflow_server(scratch: &Path, tracking: &str) -> Result<(Server, u16)> {
    let port = free_port()?;
    let server = start(
        Command::new(python::venv_script(&root(), "mlflow"))
            .args([
                "models",
                "serve",
                "-m",
                "models:/bikes@Champion",
                "--env-manager",
                "local",
            ])
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            // It starts `uvicorn` from PATH: the venv's.
            .env("PATH", venv_path()?)
            .env("MLFLOW_TRACKING_URI", tracking)
            .env("MLFLOW_REGISTRY_URI", tracking)
            .current_dir(scratch.join("mlflow")),
        port,
        &scratch.join("mlflow-serve.log"),
    )?;
    Ok((server, port))
}

/// `cargo xtask bench --stress`: `velo run configs/stress.yaml` in a project holding the
/// parity forest, with `mlflow models serve` (the reference harness's forest, started here)
/// loaded beside velo's in-process server, step for step, in one tracking run; prints the
/// job's findings and leaves its run in the project's store.
pub(crate) fn stress(data_dir: &Path) -> Result<()> {
    if !cfg!(unix) {
        bail!("the stress comparison runs on Unix only");
    }
    in_scratch("stress-bench", data_dir, stress_in)
}

/// Runs `body` with the release `velo`, the canonical `data_dir` and a scratch directory
/// (removed after), once the venv holds the bench packages.
pub(crate) fn in_scratch<T>(
    name: &str,
    data_dir: &Path,
    body: impl FnOnce(&Path, &Path, &Path) -> Result<T>,
) -> Result<T> {
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("the data directory {} is missing", data_dir.display()))?;
    python::ensure_venv(&root())?;
    python::ensure_packages(&root(), python::BENCH_REQUIREMENTS)?;
    let velo = super::chain::build_velo()?;
    let scratch = std::env::temp_dir().join(format!("velo-{name}-{}", std::process::id()));
    let result = body(&velo, &data_dir, &scratch);
    if let Err(error) = std::fs::remove_dir_all(&scratch) {
        eprintln!("xtask: cannot remove {}: {error}", scratch.display());
    }
    result
}

fn stress_in(velo: &Path, data_dir: &Path, scratch: &Path) -> Result<()> {
    let project = velo_project(velo, data_dir, scratch, "configs/parity/training.yaml")?;
    let tracking = mlflow_model(data_dir, scratch)?;
    let (mlflow_server, port) = mlflow_server(scratch, &tracking)?;
    // The uvicorn worker answers requests: report its memory, else the leader's.
    let leader = mlflow_server.pid();
    let worker = Command::new("pgrep")
        .args(["-P", &leader.to_string()])
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()?
                .trim()
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(leader);
    let servers = format!(
        "job: {{servers: [{{name: velo}}, {{name: mlflow, url: 'http://127.0.0.1:{port}', pid: {worker}}}]}}"
    );
    in_dir(
        Command::new(velo)
            .args(["run", "configs/stress.yaml", "-e", &servers])
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI"),
        &project,
    )?;
    drop(mlflow_server);
    // The charts outlive the scratch project.
    let keep = root().join("target/bench-stress");
    std::fs::create_dir_all(&keep)?;
    let mut pending = vec![project.join("mlruns")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if path.is_dir() {
                pending.push(path);
            } else if name.starts_with("stress_") && name.ends_with(".png") {
                std::fs::copy(&path, keep.join(&name))?;
            }
        }
    }
    eprintln!("xtask: the stress charts are in {}", keep.display());
    Ok(())
}

/// `PATH` with the venv's scripts first.
fn venv_path() -> Result<std::ffi::OsString> {
    let scripts = python::venv_script(&root(), "mlflow")
        .parent()
        .map(Path::to_path_buf)
        .context("the venv has no scripts directory")?;
    let rest = std::env::var_os("PATH").unwrap_or_default();
    Ok(std::env::join_paths(
        std::iter::once(scripts).chain(std::env::split_paths(&rest)),
    )?)
}

/// Runs `command` in `dir` (not the workspace root, unlike `crate::run`).
pub(crate) fn in_dir(command: &mut Command, dir: &Path) -> Result<()> {
    let shown = format!("{command:?}");
    eprintln!("xtask: $ (in {}) {shown}", dir.display());
    let status = command
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// The median of each figure.
pub(crate) fn median(loads: &[Load]) -> Load {
    let pick = |figure: fn(&Load) -> f64| {
        let mut values: Vec<f64> = loads.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Load {
        requests_per_second: pick(|l| l.requests_per_second),
        p50_ms: pick(|l| l.p50_ms),
        p99_ms: pick(|l| l.p99_ms),
    }
}

fn table(rows: &Rows, runs: usize) -> String {
    let mut out = format!(
        "\nvelo serve vs mlflow models serve (wrk -t2 -c8, {SECONDS} s per load, medians of {runs} run(s))\n\n\
         | request | velo req/s | MLflow req/s | ratio | velo p50 / p99 (ms) | MLflow p50 / p99 (ms) | target | velo logging req/s | logging on / off | target |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for Row {
        rows: request_rows,
        velo,
        logged,
        mlflow,
    } in rows
    {
        let ratio = velo.requests_per_second / mlflow.requests_per_second;
        let kept = logged.requests_per_second / velo.requests_per_second;
        let (target, log_target) = if *request_rows == 1 {
            (
                if ratio >= 20.0 {
                    ">= 20x (met)"
                } else {
                    ">= 20x (NOT met)"
                },
                if kept >= 0.9 {
                    ">= 0.90 (met)"
                } else {
                    ">= 0.90 (NOT met)"
                },
            )
        } else {
            ("", "")
        };
        out.push_str(&format!(
            "| {request_rows} row(s) | {:.0} | {:.1} | {ratio:.1}x | {:.2} / {:.2} | {:.1} / {:.1} | {target} | {:.0} | {kept:.2} | {log_target} |\n",
            velo.requests_per_second,
            mlflow.requests_per_second,
            velo.p50_ms,
            velo.p99_ms,
            mlflow.p50_ms,
            mlflow.p99_ms,
            logged.requests_per_second,
        ));
    }
    out
}

/// Installs Debian's wrk when it is missing and this process may (root, apt-get).
fn ensure_wrk() -> Result<()> {
    if crate::install::on_path("wrk") {
        return Ok(());
    }
    if !crate::install::on_path("apt-get") {
        bail!("wrk is missing: install it (Debian: apt-get install wrk)");
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "wrk"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("cannot install wrk (Debian: apt-get install wrk, as root)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read_with_their_units() {
        let report = "\
Running 10s test @ http://127.0.0.1:5000/invocations
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.00us  100.00us   3.00ms   90.00%
  Latency Distribution
     50%  480.00us
     75%  600.00us
     90%  700.00us
     99%    1.25ms
  150000 requests in 10.00s, 20.00MB read
Requests/sec:  15000.50
Transfer/sec:      2.00MB
";
        assert_eq!(
            parse_wrk(report),
            Some(Load {
                requests_per_second: 15000.5,
                p50_ms: 0.48,
                p99_ms: 1.25
            })
        );
        let failing = format!("{report}  Non-2xx or 3xx responses: 12\n");
        assert_eq!(parse_wrk(&failing), None, "errors are not throughput");
        assert_eq!(parse_wrk("garbage"), None);
    }

    #[test]
    fn medians_are_taken_figure_by_figure() {
        let load = |r, a, b| Load {
            requests_per_second: r,
            p50_ms: a,
            p99_ms: b,
        };
        assert_eq!(
            median(&[
                load(3.0, 1.0, 9.0),
                load(1.0, 3.0, 7.0),
                load(2.0, 2.0, 8.0)
            ]),
            load(2.0, 2.0, 8.0)
        );
    }
}
