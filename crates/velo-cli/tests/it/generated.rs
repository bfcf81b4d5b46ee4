//! Generated files stay in step with the code: `docs/config.schema.json` and the guide's
//! configuration reference. `UPDATE_SCHEMA=1` (or `cargo xtask codegen`) rewrites them.

use crate::{output, root, velo};

const START: &str = "<!-- config-reference:start -->";
const END: &str = "<!-- config-reference:end -->";

fn update() -> bool {
    std::env::var("UPDATE_SCHEMA").is_ok_and(|value| value == "1")
}

#[test]
fn generated_json_schema_is_fresh() {
    let printed = output(velo().arg("--schema"));
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    let path = root().join("docs/config.schema.json");
    if update() {
        std::fs::write(&path, &printed.stdout).expect("writes the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == printed.stdout,
        "docs/config.schema.json is stale: run `cargo xtask codegen` and commit it"
    );
    // `velo schema` prints the same document as `velo --schema`.
    assert_eq!(output(velo().arg("schema")).stdout, printed.stdout);
}

#[test]
fn generated_guide_reference_is_fresh() {
    let printed = output(velo().args(["schema", "--markdown"]));
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    let path = root().join("docs/guide/src/reference/configuration.md");
    let readme = std::fs::read_to_string(&path).expect("the guide's reference exists");
    let (Some(start), Some(end)) = (readme.find(START), readme.find(END)) else {
        panic!("{} lacks the {START} … {END} markers", path.display());
    };
    let expected = format!("{START}\n{}{END}", printed.stdout);
    let current = &readme[start..end + END.len()];
    if update() && current != expected {
        let updated = format!(
            "{}{expected}{}",
            &readme[..start],
            &readme[end + END.len()..]
        );
        std::fs::write(&path, updated).expect("writes the guide's reference");
        return;
    }
    assert!(
        current == expected,
        "the guide's configuration reference is stale: run `cargo xtask codegen` and commit it"
    );
}
