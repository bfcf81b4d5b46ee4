//! Generated files stay in step with the code: `docs/config.schema.json` and the README's
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
fn generated_readme_reference_is_fresh() {
    let printed = output(velo().args(["schema", "--markdown"]));
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md exists");
    let (Some(start), Some(end)) = (readme.find(START), readme.find(END)) else {
        panic!("README.md lacks the {START} … {END} markers");
    };
    let expected = format!("{START}\n{}{END}", printed.stdout);
    let current = &readme[start..end + END.len()];
    if update() && current != expected {
        let updated = format!(
            "{}{expected}{}",
            &readme[..start],
            &readme[end + END.len()..]
        );
        std::fs::write(&path, updated).expect("writes README.md");
        return;
    }
    assert!(
        current == expected,
        "the README's configuration reference is stale: run `cargo xtask codegen` and commit it"
    );
}
