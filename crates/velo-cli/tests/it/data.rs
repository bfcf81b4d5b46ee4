//! The data commands: synthesis, import and validation, with their failures.

use std::path::Path;

use crate::{output, root, velo};

const FILES: [&str; 4] = [
    "inputs_train.parquet",
    "targets_train.parquet",
    "inputs_test.parquet",
    "targets_test.parquet",
];

fn digest_of(stdout: &str) -> String {
    stdout
        .rsplit("digest ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The shipped schema of one of the four split files.
fn schema_for(file: &str) -> &'static str {
    if file.starts_with("inputs") {
        "configs/schemas/inputs.yaml"
    } else {
        "configs/schemas/targets.yaml"
    }
}

fn validate(file: &Path, schema: &str) -> crate::Output {
    output(
        velo()
            .args(["data", "validate"])
            .arg(file)
            .args(["--schema", schema]),
    )
}

#[test]
fn synth_is_deterministic_and_valid_against_the_schemas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    for out in [&first, &second] {
        let result = output(
            velo()
                .args(["data", "synth", "--rows", "3000", "--seed", "7", "--out"])
                .arg(out),
        );
        assert_eq!(result.code, 0, "{}", result.stderr);
        assert!(
            result.stdout.contains("2400 train rows, 600 test rows"),
            "{}",
            result.stdout
        );
    }
    for file in FILES {
        let schema = schema_for(file);
        let a = validate(&first.join(file), schema);
        assert_eq!(a.code, 0, "{file}: {}", a.stderr);
        let b = validate(&second.join(file), schema);
        assert_eq!(
            digest_of(&a.stdout),
            digest_of(&b.stdout),
            "{file} differs between runs"
        );
    }
    let other_seed = dir.path().join("other");
    let result = output(
        velo()
            .args(["data", "synth", "--rows", "3000", "--seed", "8", "--out"])
            .arg(&other_seed),
    );
    assert_eq!(result.code, 0, "{}", result.stderr);
    let a = validate(&first.join(FILES[0]), "configs/schemas/inputs.yaml");
    let c = validate(&other_seed.join(FILES[0]), "configs/schemas/inputs.yaml");
    assert_ne!(
        digest_of(&a.stdout),
        digest_of(&c.stdout),
        "another seed gives other data"
    );
}

#[test]
fn a_schema_violation_names_the_file_the_column_and_the_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "instant,season,cnt\n1,1,10\n2,7,12\n3,2,-4\n4,9,3\n")
        .expect("writes the CSV");
    let schema = dir.path().join("schema.yaml");
    std::fs::write(
        &schema,
        "index: instant\ncolumns:\n  - {name: instant, type: uint32}\n  - {name: season, type: uint8, allowed: [1, 2, 3, 4]}\n  - {name: cnt, type: uint32}\n",
    )
    .expect("writes the schema");
    let result = output(
        velo()
            .args(["data", "validate"])
            .arg(&csv)
            .arg("--schema")
            .arg(&schema),
    );
    assert_eq!(result.code, 1, "{}", result.stdout);
    for needle in ["bad.csv", "season", "cnt", "rows 1, 3", "row 2;"] {
        assert!(
            result.stderr.contains(needle),
            "`{needle}` missing from:\n{}",
            result.stderr
        );
    }
}

#[test]
fn a_truncated_parquet_file_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("data");
    let result = output(
        velo()
            .args(["data", "synth", "--rows", "500", "--out"])
            .arg(&out),
    );
    assert_eq!(result.code, 0, "{}", result.stderr);
    let file = out.join("inputs_train.parquet");
    let bytes = std::fs::read(&file).expect("reads the file");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncates the file");
    let result = validate(&file, "configs/schemas/inputs.yaml");
    assert_eq!(result.code, 1, "{}", result.stdout);
    assert!(
        result.stderr.contains("inputs_train.parquet"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.to_lowercase().contains("parquet"),
        "{}",
        result.stderr
    );
}

#[test]
fn import_reproduces_the_shared_splits() {
    let shared = root().join("../shared/data/bike-sharing");
    if !shared.join("hour.csv").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the shared dataset is missing in CI"
        );
        eprintln!("skipped: {} is absent", shared.display());
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let result = output(
        velo()
            .args(["data", "import", "--csv"])
            .arg(shared.join("hour.csv"))
            .arg("--out")
            .arg(dir.path()),
    );
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result.stdout.contains("imported 17379 rows"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains("13903 train rows, 3476 test rows"),
        "{}",
        result.stdout
    );
    for file in FILES {
        let schema = schema_for(file);
        let ours = validate(&dir.path().join(file), schema);
        let theirs = validate(&shared.join(file), schema);
        assert_eq!(ours.code, 0, "{file}: {}", ours.stderr);
        assert_eq!(
            digest_of(&ours.stdout),
            digest_of(&theirs.stdout),
            "{file} differs from the shared file"
        );
    }
}

#[test]
fn an_import_that_breaks_the_schema_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("hour.csv");
    let header = "instant,dteday,season,yr,mnth,hr,holiday,weekday,workingday,weathersit,temp,atemp,hum,windspeed,casual,registered,cnt";
    let rows = [
        "1,2011-01-01,1,0,1,0,0,6,0,1,0.24,0.2879,0.81,0,3,13,16",
        "2,2011-01-01,1,0,1,1,0,6,0,9,0.22,0.2727,0.8,0,8,32,40",
        "3,2011-01-01,1,0,1,2,0,6,0,1,0.22,0.2727,0.8,0,5,27,32",
    ];
    std::fs::write(&csv, format!("{header}\n{}\n", rows.join("\n"))).expect("writes the CSV");
    let out = dir.path().join("out");
    let result = output(
        velo()
            .args(["data", "import", "--csv"])
            .arg(&csv)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(result.code, 1, "{}", result.stdout);
    assert!(result.stderr.contains("weathersit"), "{}", result.stderr);
    assert!(result.stderr.contains("(row 1;"), "{}", result.stderr);
    for file in FILES {
        assert!(
            !out.join(file).exists(),
            "{file} was written despite the violation"
        );
    }
}

#[test]
fn files_without_rows_or_line_breaks_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let header = "instant,dteday,season,yr,mnth,hr,holiday,weekday,workingday,weathersit,temp,atemp,hum,windspeed,casual,registered,cnt";
    let empty = dir.path().join("empty.csv");
    let header_only = dir.path().join("header.csv");
    let one_line = dir.path().join("one_line.csv");
    std::fs::write(&empty, "").expect("write");
    std::fs::write(&header_only, format!("{header}\n")).expect("write");
    // 9 MiB without a line break: over the 8 MiB a line may take.
    std::fs::write(&one_line, vec![b'7'; 9 << 20]).expect("write");
    let import = |csv: &Path| {
        let out = dir.path().join("out");
        let result = output(
            velo()
                .args(["data", "import", "--csv"])
                .arg(csv)
                .arg("--out")
                .arg(&out),
        );
        (result, out)
    };
    let (result, out) = import(&header_only);
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("header.csv holds no rows to import"),
        "{}",
        result.stderr
    );
    assert!(!out.join(FILES[0]).exists());
    let (result, _) = import(&empty);
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(result.stderr.contains("empty.csv"), "{}", result.stderr);
    for csv in [one_line.as_path(), Path::new("/dev/zero")] {
        if !csv.exists() {
            continue;
        }
        let (result, _) = import(csv);
        assert_eq!(result.code, 1, "{}", result.stderr);
        assert!(
            result.stderr.contains(&csv.display().to_string())
                && result
                    .stderr
                    .contains("line 1 is longer than 8388608 bytes (max_line_bytes)"),
            "{}",
            result.stderr
        );
    }
}
