//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `hashsieve` binary cargo built for these tests.
pub fn hashsieve() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hashsieve"))
}

/// Runs `hashsieve` with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    hashsieve().args(args).output().expect("run hashsieve")
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses NDJSON output into JSON values.
pub fn ndjson(bytes: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(bytes)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}")))
        .collect()
}

/// The file name of a path string.
pub fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
