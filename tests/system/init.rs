//! `velo init` then `velo project`, with no file edited by hand: on the energy-demand
//! example's data, on a table the test generates (leaking columns, text, dates, a time order),
//! and on a file pandas wrote with a named range index.

use std::fmt::Write as _;
use std::path::Path;

use crate::{Output, output, velo, workspace_binary};

/// `velo` run from `dir`.
fn velo_in(dir: &Path, args: &[&str]) -> Output {
    output(velo().current_dir(dir).args(args))
}

fn succeeded(what: &str, run: &Output) {
    assert_eq!(
        run.code, 0,
        "{what} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
}

/// The lifecycle, then the scenario suite and monitoring, in a project `velo init` wrote.
fn run_the_project(project: &Path) {
    succeeded("velo project", &velo_in(project, &["project"]));
    for file in [
        "outputs/predictions_test.parquet",
        "outputs/models_explanations.parquet",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    for config in ["configs/scenarios.yaml", "configs/monitoring.yaml"] {
        succeeded(config, &velo_in(project, &["run", config]));
    }
}

#[test]
fn velo_init_then_velo_project_runs_the_lifecycle_on_the_energy_example_data() {
    let temp = tempfile::tempdir().unwrap();
    let source = temp.path().join("source");
    let made = std::process::Command::new(workspace_binary(
        "velo-example-energy-demand",
        "energy-demand",
    ))
    .arg(&source)
    .arg("--data-only")
    .output()
    .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let project = temp.path().join("energy");
    let inputs = source.join("data/inputs_train.parquet");
    let targets = source.join("data/targets_train.parquet");
    let init = |extra: &[&str]| {
        let mut args = vec![
            "init".to_owned(),
            project.display().to_string(),
            "--inputs".to_owned(),
            inputs.display().to_string(),
            "--targets".to_owned(),
            targets.display().to_string(),
            "--index".to_owned(),
            "id".to_owned(),
            "--time".to_owned(),
            "id".to_owned(),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        output(velo().args(&args))
    };
    let first = init(&[]);
    succeeded("velo init", &first);
    assert!(first.stdout.contains("target `kwh`"), "{}", first.stdout);
    assert!(first.stdout.contains("ordered by `id`"), "{}", first.stdout);
    let schema = std::fs::read_to_string(project.join("configs/schemas/inputs.yaml")).unwrap();
    assert!(schema.contains("index: id"), "{schema}");
    assert!(
        schema.contains("{name: building, type: uint8, allowed: [1, 2, 3]}"),
        "{schema}"
    );
    run_the_project(&project);

    // An existing project is kept unless --force says otherwise.
    let training = project.join("configs/training.yaml");
    std::fs::write(&training, "# mine\n").unwrap();
    let again = init(&[]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("holds a project already"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&training).unwrap(), "# mine\n");
    succeeded("velo init --force", &init(&["--force"]));
    assert_ne!(std::fs::read_to_string(&training).unwrap(), "# mine\n");
}

/// A CSV of hourly demand in a city: the target is the sum of two columns that a model would
/// not know in advance; rows are not in time order.
fn demand_csv(path: &Path, rows: usize) {
    let mut text = String::from("reading,at,city,temperature,humidity,walk_ins,bookings,demand\n");
    let mut state = 7_u64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / f64::from(1_u32 << 31) - 0.5
    };
    for row in 0..rows {
        let hour = (row * 7) % rows;
        let city = ["Lille", "Brest", "Pau"][row % 3];
        let temperature =
            12.0 + 8.0 * ((hour % 24) as f64 / 24.0 * std::f64::consts::TAU).sin() + 2.0 * noise();
        let humidity = 0.5 + 0.4 * noise();
        let base = 30.0 + 2.0 * temperature + if city == "Pau" { 15.0 } else { 0.0 };
        let walk_ins = (base * 0.3 + 5.0 * noise()).max(0.0).round();
        let bookings = (base * 0.7 + 8.0 * noise()).max(0.0).round();
        let _ = writeln!(
            text,
            "r{row:05},2025-03-{:02} {:02}:00:00,{city},{temperature:.2},{humidity:.3},{walk_ins},\
             {bookings},{}",
            hour / 24 % 28 + 1,
            hour % 24,
            walk_ins + bookings
        );
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn velo_init_on_generated_data_drops_leaks_and_splits_in_time() {
    let temp = tempfile::tempdir().unwrap();
    let csv = temp.path().join("demand.csv");
    demand_csv(&csv, 600);
    let project = temp.path().join("demand");
    let init = output(velo().args([
        "init",
        project.to_str().unwrap(),
        "--inputs",
        csv.to_str().unwrap(),
        "--target",
        "demand",
        "--time",
        "at",
    ]));
    succeeded("velo init", &init);
    // Bookings alone nearly determine demand, and with walk-ins they add up to it.
    let leaks: Vec<&str> = init
        .stdout
        .lines()
        .filter(|line| line.contains("leakage:"))
        .collect();
    for column in ["`bookings`", "`walk_ins`"] {
        assert!(
            leaks.iter().any(|line| line.contains(column)),
            "{}",
            init.stdout
        );
    }
    assert!(
        leaks.iter().all(|line| !line.contains("`temperature`")),
        "{}",
        init.stdout
    );
    let schema = std::fs::read_to_string(project.join("configs/schemas/inputs.yaml")).unwrap();
    assert!(schema.contains("{name: at, type: datetime}"), "{schema}");
    assert!(
        schema.contains("allowed: [\"Brest\", \"Lille\", \"Pau\"]"),
        "{schema}"
    );
    assert!(schema.contains("an identifier, left out"), "{schema}");
    let training = std::fs::read_to_string(project.join("configs/training.yaml")).unwrap();
    assert!(training.contains("categoricals: [city]"), "{training}");
    assert!(
        training.contains("drop: [reading, at, bookings, walk_ins]"),
        "{training}"
    );
    run_the_project(&project);
    // A bad flag is a usage error naming the column and the ones there are.
    let wrong = output(velo().args([
        "init",
        temp.path().join("other").to_str().unwrap(),
        "--inputs",
        csv.to_str().unwrap(),
        "--target",
        "demnad",
    ]));
    assert_eq!(wrong.code, 2);
    assert!(
        wrong.stderr.contains("no column `demnad`"),
        "{}",
        wrong.stderr
    );
    assert!(wrong.stderr.contains("`demand`"), "{}", wrong.stderr);
}

#[test]
fn a_named_range_index_pandas_wrote_becomes_the_project_index() {
    let Some(python) = std::env::var_os("VELO_PYTHON") else {
        assert!(
            std::env::var_os("VELO_IT").is_none() && std::env::var_os("CI").is_none(),
            "VELO_IT or CI is set but VELO_PYTHON is not"
        );
        eprintln!("skipped: VELO_PYTHON is not set");
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("frame.parquet");
    let script = "import sys, numpy as np, pandas as pd\n\
        rng = np.random.default_rng(1)\n\
        x = rng.normal(size=300)\n\
        df = pd.DataFrame({'x': x, 'kind': rng.choice(['a', 'b'], 300), 'y': 3 * x + rng.normal(size=300)})\n\
        df.index.name = 'row'\n\
        df.to_parquet(sys.argv[1])\n";
    let wrote = std::process::Command::new(python)
        .args(["-c", script, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        wrote.status.success(),
        "{}",
        String::from_utf8_lossy(&wrote.stderr)
    );
    let project = temp.path().join("frame");
    let init = output(velo().args([
        "init",
        project.to_str().unwrap(),
        "--inputs",
        file.to_str().unwrap(),
        "--target",
        "y",
    ]));
    succeeded("velo init", &init);
    assert!(
        init.stdout.contains("the index is `row`"),
        "{}",
        init.stdout
    );
    let targets = std::fs::read_to_string(project.join("configs/schemas/targets.yaml")).unwrap();
    assert!(targets.contains("index: row"), "{targets}");
    succeeded("velo project", &velo_in(&project, &["project"]));
}
