//! Importing a CSV into inputs/targets train/test Parquet files.

use std::path::{Path, PathBuf};

use velo_io::datasets::{
    DatasetReader, ParquetReader,
    import::import_csv,
    pandas_index_columns,
    spec::DataSpec,
    splits::{INPUTS_TEST, INPUTS_TRAIN, TARGETS_TEST, TARGETS_TRAIN},
};

use crate::chain;

fn repo_configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn importing_the_uci_csv_reproduces_the_shared_splits() {
    let Some(shared) = crate::shared_bike_dir() else {
        return;
    };
    let spec = DataSpec::load(&repo_configs().join("data.yaml")).expect("data spec");
    let out = tempfile::tempdir().expect("tempdir");
    let summary = import_csv(&shared.join("hour.csv"), &spec, out.path()).expect("import");
    assert_eq!(summary.splits.n_train, 13_903);
    assert_eq!(summary.splits.n_test, 3_476);
    assert_eq!(summary.source.rows, 17_379);
    assert_eq!(summary.source.name, "hour");

    for file in [INPUTS_TRAIN, TARGETS_TRAIN, INPUTS_TEST, TARGETS_TEST] {
        let ours = ParquetReader::new(out.path().join(file))
            .read()
            .expect("ours");
        let theirs = ParquetReader::new(shared.join(file))
            .read()
            .expect("theirs");
        let (a, b) = (ours.data.schema(), theirs.data.schema());
        let names = |s: &arrow::datatypes::Schema| -> Vec<(String, arrow::datatypes::DataType)> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        assert_eq!(names(&a), names(&b), "{file}: columns and types");
        assert_eq!(
            pandas_index_columns(&a),
            vec!["instant".to_owned()],
            "{file}"
        );
        assert_eq!(ours.data.num_rows(), theirs.data.num_rows(), "{file}: rows");
        for (i, field) in b.fields().iter().enumerate() {
            assert_eq!(
                ours.data.column(i).as_ref(),
                theirs.data.column(i).as_ref(),
                "{file}: column {}",
                field.name()
            );
        }
        // Same logical table, same digest, whoever wrote the file.
        assert_eq!(ours.lineage.digest, theirs.lineage.digest, "{file}");
    }
    assert_eq!(summary.splits.inputs_train.rows, 13_903);
    assert_eq!(summary.splits.targets_test.rows, 3_476);
}

/// A generic layout: two schemas sharing the index `id`.
fn small_spec(dir: &Path) -> DataSpec {
    std::fs::write(
        dir.join("in.yaml"),
        "name: in\nindex: id\ncolumns:\n  - {name: id, type: uint32}\n  - {name: a, type: uint8, max: 9}\n  - {name: day, type: date}\n",
    )
    .expect("inputs schema");
    std::fs::write(
        dir.join("out.yaml"),
        "name: out\nindex: id\ncolumns:\n  - {name: id, type: uint32}\n  - {name: y, type: float64, min: 0}\n",
    )
    .expect("targets schema");
    std::fs::write(
        dir.join("data.yaml"),
        "inputs_schema: in.yaml\ntargets_schema: out.yaml\ntest_ratio: 0.25\n",
    )
    .expect("spec");
    DataSpec::load(&dir.join("data.yaml")).expect("spec")
}

#[test]
fn imports_split_by_count_and_keep_the_csv_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = small_spec(dir.path());
    let csv = dir.path().join("small.csv");
    let mut text = String::from("y,day,a,id,ignored\n");
    for i in 1..=10 {
        text.push_str(&format!("{}.5,2020-01-{i:02},{},{i},x\n", i * 2, i % 10));
    }
    std::fs::write(&csv, text).expect("csv");
    let out = dir.path().join("out");
    let summary = import_csv(&csv, &spec, &out).expect("import");
    // ceil(10 * 0.25) = 3 test rows.
    assert_eq!((summary.splits.n_train, summary.splits.n_test), (7, 3));
    let inputs = ParquetReader::new(out.join(INPUTS_TEST))
        .read()
        .expect("inputs")
        .data;
    let names: Vec<String> = inputs
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["a", "day", "id"]);
    // The CSV's inferred types are kept: the schemas only validate.
    assert_eq!(
        inputs.schema().field(1).data_type(),
        &arrow::datatypes::DataType::Utf8
    );
    let ids = inputs
        .column(2)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("int64");
    assert_eq!(ids.values().to_vec(), vec![8, 9, 10]);
    let targets = ParquetReader::new(out.join(TARGETS_TRAIN))
        .read()
        .expect("targets")
        .data;
    assert_eq!(targets.num_rows(), 7);
    assert_eq!(targets.schema().field(0).name(), "y");
}

#[test]
fn an_invalid_row_fails_the_import_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = small_spec(dir.path());
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "id,a,day,y\n1,3,2020-01-01,1\n2,12,2020-01-02,2\n3,4,2020-13-01,-1\n",
    )
    .expect("csv");
    let out = dir.path().join("out");
    let error = import_csv(&csv, &spec, &out).expect_err("invalid");
    let message = chain(&error);
    assert!(
        message.starts_with(&format!("{} does not match schema in", csv.display())),
        "{message}"
    );
    assert!(
        message.contains("column 'a': 1 row above the maximum 9 (row 1;"),
        "{message}"
    );
    assert!(message.contains("column 'day'"), "{message}");
    // The output directory may have been created, but holds nothing (not even temporary files).
    let entries = std::fs::read_dir(&out).map_or(0, Iterator::count);
    assert_eq!(entries, 0);
}

/// Writes a small CSV of `rows` rows and imports it into `out`.
fn import_rows(dir: &Path, rows: usize, out: &Path) {
    let spec = small_spec(dir);
    let csv = dir.join(format!("rows_{rows}.csv"));
    let mut text = String::from("y,day,a,id,ignored\n");
    for i in 1..=rows {
        text.push_str(&format!(
            "{}.5,2020-01-{:02},{},{i},x\n",
            i * 2,
            i % 28 + 1,
            i % 10
        ));
    }
    std::fs::write(&csv, text).expect("csv");
    import_csv(&csv, &spec, out).expect("import");
}

fn rows_of(out: &Path, file: &str) -> usize {
    ParquetReader::new(out.join(file))
        .read()
        .expect("read")
        .data
        .num_rows()
}

/// An import killed between the renames of its four files leaves a journal; the next reader
/// completes the set first, so it reads the new set whole, never new inputs beside old targets.
#[test]
fn an_interrupted_import_is_completed_before_anything_is_read() {
    const FILES: [&str; 4] = [INPUTS_TRAIN, TARGETS_TRAIN, INPUTS_TEST, TARGETS_TEST];
    let dir = tempfile::tempdir().expect("tempdir");
    // 10 rows: 7 train and 3 test; 20 rows: 15 and 5.
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    import_rows(dir.path(), 20, &new);
    for renamed in 0..=FILES.len() {
        import_rows(dir.path(), 10, &old);
        // The state a kill leaves after `renamed` of the four renames: the journal, the new
        // files still under their temporary names, the first ones already in place.
        let mut journal = String::new();
        for (position, file) in FILES.iter().enumerate() {
            let temp = format!(".{file}.999999999.{position:016x}.tmp");
            journal.push_str(&format!("{temp}\t{file}\n"));
            let target = if position < renamed {
                file.to_string()
            } else {
                temp
            };
            std::fs::copy(new.join(file), old.join(target)).expect("copy");
        }
        std::fs::write(old.join(".velo-publish.journal"), journal).expect("journal");
        // Readers read the new set, whichever file they open first.
        assert_eq!(rows_of(&old, TARGETS_TEST), 5, "after {renamed} renames");
        assert_eq!(
            FILES.map(|file| rows_of(&old, file)),
            [15, 15, 5, 5],
            "after {renamed} renames"
        );
        let mut left: Vec<String> = std::fs::read_dir(&old)
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        left.sort();
        let mut expected = FILES.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(left, expected, "no journal or temporary file is left");
    }
}
