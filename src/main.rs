//! The `hashsieve` binary: parse arguments, dispatch, map the outcome to an exit code.

use std::process::ExitCode;

/// Large blocks (the index, the sets) on transparent huge pages: random reads across them
/// miss the TLB far less.
#[global_allocator]
static ALLOCATOR: hashsieve::hugepages::HugePageAdvice = hashsieve::hugepages::HugePageAdvice;

fn main() -> ExitCode {
    hashsieve::hugepages::configure_from_env();
    hashsieve::cli::main()
}
