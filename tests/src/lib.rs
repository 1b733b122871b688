//! Helpers for the end-to-end tests in `tests/`: locating (and if needed
//! building) the workspace's binaries so tests drive them as a user would.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Path of a binary of this workspace, built with the `dev` profile.
/// Builds each package once per test process, so a bare `cargo test` works
/// without a separate build step.
pub fn bin(package: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built
        .get_or_insert_with(HashSet::new)
        .insert(package.to_string())
    {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--bins", "-p", package])
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building {package} failed");
    }
    drop(built);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let path = target.join("debug").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}
