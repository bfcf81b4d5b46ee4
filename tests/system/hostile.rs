//! The hostile corpus: bad configurations, bad data, bad references, damaged artifacts and
//! traversal payloads against the `velo` binary, each expected to fail with a clear error
//! naming its object, the right exit code, and the store left as it was.
//!
//! The totals (tried, clear errors, silently accepted, crashes, data lost) are printed so the
//! figure can be watched; the test fails on any silent acceptance, crash or loss.

use std::{
    collections::BTreeMap,
    hash::{Hash as _, Hasher as _},
    path::{Path, PathBuf},
};

use crate::{jobs::model_store, output, velo};

/// One hostile input: how to run it, and what a clear refusal says.
struct Case {
    name: &'static str,
    /// Arguments of `velo` (the store's URI replaces `{store}`, the project dir `{dir}`).
    args: Vec<String>,
    /// The exit code a refusal must have.
    code: i32,
    /// Every one of these must appear in stderr: the object at fault.
    says: Vec<String>,
    /// Whether the champion's model file is damaged (truncated) before this case runs.
    damages_model: bool,
}

/// Every file below `root` with a hash of its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, u64> {
    walk(root)
        .into_iter()
        .map(|path| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&path).unwrap_or_default().hash(&mut hasher);
            (path, hasher.finish())
        })
        .collect()
}

fn case(name: &'static str, args: &[&str], code: i32, says: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        code,
        says: says.iter().map(|text| (*text).to_owned()).collect(),
        damages_model: false,
    }
}

/// A job config file in `dir` with `text`, returning its path.
fn config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn the_hostile_corpus_gets_clear_errors_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let uri = model_store(dir.path());
    let (data, store) = (dir.path().join("data"), dir.path().join("mlruns"));

    let services = format!(
        "services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}', registry_name: bikes, experiment_name: bikes}}}}"
    );
    let with_store = |extra: &str| {
        format!(
            "job: {{{extra}{}{services}}}",
            if extra.is_empty() { "" } else { ", " }
        )
    };
    let d = dir.path();
    let header = "instant,dteday,season,yr,mnth,hr,holiday,weekday,workingday,weathersit,temp,atemp,hum,windspeed,casual,registered,cnt";
    let header_only = config(d, "header.csv", &format!("{header}\n"));
    let one_line = d.join("one_line.csv");
    std::fs::write(&one_line, vec![b'1'; 9 << 20]).unwrap();
    let truncated = d.join("truncated.parquet");
    let inputs = std::fs::read(data.join("inputs_test.parquet")).unwrap();
    std::fs::write(&truncated, &inputs[..inputs.len() / 2]).unwrap();
    let out = d.join("out").display().to_string();
    let typed_by_hand = config(
        d,
        "typed.csv",
        &format!(
            "{header}\n1,2011-01-01,1,0,1,0,0,6,0,1,0.24,0.2879,0.81,0,3,13,16\n2,2011-01-01,1,0,1,1,0,6,0,1,warm,0.27,0.8,0,8,32,40\n"
        ),
    );

    let mut cases = vec![
        case(
            "unknown key",
            &["run", "configs/training.yaml", "-e", "job: {modle: {}}"], // spellchecker:disable-line
            2,
            &["modle", "--extras #1"], // spellchecker:disable-line
        ),
        case(
            "wrong type",
            &[
                "run",
                "configs/training.yaml",
                "-e",
                "job: {model: {max_depth: deep}}",
            ],
            2,
            &["job.model.max_depth"],
        ),
        case(
            "missing config file",
            &["run", "configs/nope.yaml"],
            2,
            &["configs/nope.yaml"],
        ),
        case(
            "zero trees",
            &[
                "run",
                "configs/training.yaml",
                "-e",
                "job: {model: {n_estimators: 0}}",
            ],
            2,
            &["job.model.n_estimators", "an integer >= 1"],
        ),
        case(
            "unknown KIND",
            &[
                "run",
                "configs/training.yaml",
                "-e",
                "job: {KIND: TrainingJobs}",
            ],
            2,
            &["TrainingJobs"],
        ),
        case(
            "malformed extras",
            &["run", "configs/training.yaml", "-e", "job: {model: [}"],
            2,
            &["--extras #1"],
        ),
        case(
            "unknown profile",
            &["run", "configs/training.yaml", "--profile", "nope"],
            2,
            &["profile `nope`", "dev, prod"],
        ),
        case(
            "Kafka batch of zero",
            &[
                "run",
                "--dry-run",
                "configs/kafka_inference.yaml",
                "-e",
                "job: {max_batch: 0}",
            ],
            2,
            &["job.max_batch"],
        ),
        case(
            "missing schema file",
            &[
                "run",
                "--dry-run",
                "configs/training.yaml",
                "-e",
                "job: {schemas: {inputs: configs/schemas/nope.yaml}}",
            ],
            2,
            &["configs/schemas/nope.yaml"],
        ),
        case(
            "header-only CSV",
            &["data", "import", "--csv", &header_only, "--out", &out],
            1,
            &["header.csv", "no rows"],
        ),
        case(
            "CSV without line breaks",
            &[
                "data",
                "import",
                "--csv",
                &one_line.display().to_string(),
                "--out",
                &out,
            ],
            1,
            &["one_line.csv", "max_line_bytes"],
        ),
        case(
            "a word in a numeric CSV cell",
            &["data", "import", "--csv", &typed_by_hand, "--out", &out],
            1,
            &[
                "typed.csv",
                "column 'temp'",
                "1 row not a number (row 1; instant 2; values \"warm\")",
            ],
        ),
        case(
            "missing CSV",
            &[
                "data",
                "import",
                "--csv",
                "/nonexistent/hour.csv",
                "--out",
                &out,
            ],
            1,
            &["/nonexistent/hour.csv"],
        ),
        case(
            "truncated Parquet",
            &[
                "data",
                "validate",
                &truncated.display().to_string(),
                "--schema",
                "configs/schemas/inputs.yaml",
            ],
            1,
            &["truncated.parquet"],
        ),
        case(
            "serve a missing store",
            &[
                "serve",
                "-m",
                "models:/bikes@Champion",
                "--registry-uri",
                &d.join("nope").display().to_string(),
            ],
            2,
            &["nope"],
        ),
        case(
            "bad model URI",
            &["serve", "-m", "models:/bikes@", "--registry-uri", &uri],
            2,
            &["models:/bikes@"],
        ),
    ];
    let job = |name: &'static str, file: &str, extra: String, code: i32, says: &[&str]| Case {
        name,
        args: vec![
            "run".to_owned(),
            file.to_owned(),
            "-e".to_owned(),
            with_store(&extra),
        ],
        code,
        says: says.iter().map(|text| (*text).to_owned()).collect(),
        damages_model: false,
    };
    cases.push(job(
        "unknown alias",
        "configs/inference.yaml",
        format!(
            "alias_or_version: Nobody, inputs: {{path: '{}'}}, outputs: {{path: '{out}/p.parquet'}}",
            data.join("inputs_test.parquet").display()
        ),
        2,
        &["Nobody"],
    ));
    cases.push(job(
        "unknown version",
        "configs/promotion.yaml",
        "version: 99".to_owned(),
        2,
        &["bikes/99"],
    ));
    let unregistered = format!(
        "job: {{inputs: {{path: '{}'}}, outputs: {{path: '{out}/p.parquet'}}, services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}', registry_name: nobody}}}}}}",
        data.join("inputs_test.parquet").display()
    );
    cases.push(case(
        "unregistered model name",
        &["run", "configs/inference.yaml", "-e", &unregistered],
        2,
        &["models:/nobody@Champion"],
    ));
    cases.push(job(
        "thresholds missed",
        "configs/promotion.yaml",
        "thresholds: {r2_score: {threshold: 2.0, greater_is_better: true}}".to_owned(),
        1,
        &["r2_score", "not moved"],
    ));
    cases.push(job(
        "targets of other rows",
        "configs/training.yaml",
        format!(
            "inputs: {{path: '{}'}}, targets: {{path: '{}'}}, model: {{n_estimators: 4}}, splitter: {{test_size: 100}}",
            data.join("inputs_train.parquet").display(),
            data.join("targets_test.parquet").display()
        ),
        1,
        &["have no target", "instant"],
    ));
    let traversal = format!(
        "job: {{services: {{mlflow: {{tracking_uri: '{uri}', registry_uri: '{uri}', registry_name: '../escape'}}}}}}"
    );
    cases.push(case(
        "traversal in the registry name",
        &["run", "configs/promotion.yaml", "-e", &traversal],
        1,
        &["../escape"],
    ));
    cases.push(job(
        "inputs breaking the schema",
        "configs/inference.yaml",
        format!(
            "inputs: {{path: '{}'}}, outputs: {{path: '{out}/p.parquet'}}",
            data.join("targets_test.parquet").display()
        ),
        1,
        &["targets_test.parquet"],
    ));
    let duplicate = config(
        d,
        "duplicate.yaml",
        "job:\n  KIND: PromotionJob\n  alias: Champion\n  alias: Other\n",
    );
    cases.push(case(
        "duplicate key",
        &["run", &duplicate],
        2,
        &["duplicate key `alias` at lines 3 and 4"],
    ));
    let empty = config(d, "empty.yaml", "");
    cases.push(case(
        "empty config file",
        &["run", &empty],
        2,
        &["missing field `job`", "empty.yaml"],
    ));

    // Last: a damaged model file names the version and what is wrong.
    let mut damaged = job(
        "damaged model file",
        "configs/inference.yaml",
        format!(
            "inputs: {{path: '{}'}}, outputs: {{path: '{out}/p.parquet'}}",
            data.join("inputs_test.parquet").display()
        ),
        1,
        &["version 1", "model/model.velo", "invalid model artifact"],
    );
    damaged.damages_model = true;
    cases.push(damaged);

    let (mut clear, mut silent, mut crashes, mut lost) = (0, Vec::new(), Vec::new(), Vec::new());
    for case in &cases {
        if case.damages_model {
            let files: Vec<PathBuf> = walk(&store)
                .into_iter()
                .filter(|path| path.file_name().is_some_and(|name| name == "model.velo"))
                .collect();
            assert_eq!(files.len(), 1, "{files:?}");
            let model = std::fs::read(&files[0]).unwrap();
            std::fs::write(&files[0], &model[..model.len() / 3]).unwrap();
        }
        let before = snapshot(&store);
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let result = output(velo().args(&args));
        let after = snapshot(&store);
        // A refusal may log a FAILED run (new files), but never changes or removes what the
        // store held.
        if before
            .iter()
            .any(|(path, hash)| after.get(path) != Some(hash))
        {
            lost.push(case.name);
        }
        // A usage error (exit 2) is found before anything runs: not even a FAILED run.
        assert!(
            result.code != 2 || after.len() == before.len(),
            "{}: exit 2 but the store gained {} files",
            case.name,
            after.len() - before.len()
        );
        if result.code > 128 || result.code < 0 || result.stderr.contains("panicked") {
            crashes.push(format!(
                "{}: exit {}\n{}",
                case.name, result.code, result.stderr
            ));
        } else if result.code == 0 {
            silent.push(case.name);
        } else if result.code == case.code
            && case
                .says
                .iter()
                .all(|text| result.stderr.contains(text.as_str()))
        {
            clear += 1;
        } else {
            panic!(
                "{}: exit {} (expected {}), stderr does not name {:?}:\n{}",
                case.name, result.code, case.code, case.says, result.stderr
            );
        }
    }
    eprintln!(
        "hostile corpus: {} tried, {clear} clear errors, {} silently accepted, {} crashes, {} data lost",
        cases.len(),
        silent.len(),
        crashes.len(),
        lost.len()
    );
    assert!(silent.is_empty(), "silently accepted: {silent:?}");
    assert!(crashes.is_empty(), "crashes: {crashes:#?}");
    assert!(lost.is_empty(), "data lost: {lost:?}");
    assert_eq!(clear, cases.len());
}

/// Every file below `root`.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Bad requests to `velo serve`: each answers 4xx naming what is wrong, the server keeps
/// answering, and the store is unchanged.
#[test]
fn hostile_requests_get_clear_answers_and_the_server_stands() {
    let dir = tempfile::tempdir().unwrap();
    model_store(dir.path());
    let store = dir.path().join("mlruns");
    let before = snapshot(&store);
    let server = crate::serve::Server::start(&store, &["--max-body-mb", "1"]);
    let json = "application/json";
    let row = r#"{"dteday": "2012-08-07", "season": 3, "yr": 1, "mnth": 8, "hr": 12, "holiday": 0, "weekday": 2, "workingday": 1, "weathersit": 2, "temp": 0.8, "atemp": 0.76, "hum": 0.55, "windspeed": 0.13, "casual": 86, "registered": 197}"#;
    let huge = format!(
        "{{\"dataframe_records\": [{}]}}",
        vec![row; 8_000].join(",")
    );
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "not JSON",
            json,
            "{\"dataframe_records\": [".to_owned(),
            400,
            "not valid JSON",
        ),
        (
            "no data key",
            json,
            "{\"rows\": []}".to_owned(),
            400,
            "exactly one of the keys",
        ),
        (
            "two data keys",
            json,
            format!("{{\"dataframe_records\": [{row}], \"inputs\": [{row}]}}"),
            400,
            "exactly one of the keys",
        ),
        (
            "a record that is a number",
            json,
            "{\"dataframe_records\": [3]}".to_owned(),
            400,
            "row 0",
        ),
        (
            "a word in a number",
            json,
            format!(
                "{{\"dataframe_records\": [{}]}}",
                row.replace("0.55", "\"damp\"")
            ),
            400,
            "hum",
        ),
        (
            "a missing column",
            json,
            format!(
                "{{\"dataframe_records\": [{}]}}",
                row.replace("\"hr\": 12, ", "")
            ),
            400,
            "hr",
        ),
        (
            "a split of ragged rows",
            json,
            "{\"dataframe_split\": {\"columns\": [\"a\", \"b\"], \"data\": [[1]]}}".to_owned(),
            400,
            "row",
        ),
        (
            "tensor inputs",
            json,
            "{\"instances\": [[1, 2, 3]]}".to_owned(),
            400,
            "named columns",
        ),
        (
            "a media type velo does not read",
            "application/xml",
            "<rows/>".to_owned(),
            415,
            "application/xml",
        ),
        (
            "a charset other than UTF-8",
            "application/json; charset=latin-1",
            "{}".to_owned(),
            415,
            "latin-1",
        ),
        (
            "broken CSV",
            "text/csv",
            "a,b\n1,2,3\n".to_owned(),
            400,
            "CSV",
        ),
        ("a body over the limit", json, huge, 413, ""),
    ];
    let (mut clear, mut wrong) = (0, Vec::new());
    for (name, content_type, body, status, says) in &cases {
        let (answered, text, _) = server.post(content_type, body.clone());
        if answered == *status && text.contains(says) {
            clear += 1;
        } else {
            wrong.push(format!("{name}: {answered} {text}"));
        }
        let ping = reqwest::blocking::get(server.url("/ping")).unwrap();
        assert_eq!(
            ping.status().as_u16(),
            200,
            "{name}: the server stopped answering"
        );
    }
    eprintln!(
        "hostile requests: {} tried, {clear} clear answers, {} unclear, 0 crashes",
        cases.len(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
    drop(server);
    assert_eq!(snapshot(&store), before, "serving changed the store");
}
