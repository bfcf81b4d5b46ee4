//! `cargo xtask clean`: build outputs and local run artefacts.

use anyhow::{Context as _, Result};

use crate::{cargo, root};

/// Removes build outputs and local run artefacts.
pub(crate) fn clean() -> Result<()> {
    cargo(&["clean"])?;
    for artefact in ["mlruns", "outputs"] {
        let path = root().join(artefact);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            eprintln!("xtask: removed {}", path.display());
        }
    }
    Ok(())
}
