//! The `hashsieve` binary: parse arguments, dispatch, map the outcome to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    hashsieve::cli::main()
}
