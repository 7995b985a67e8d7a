//! `moose-bench`: the load generator and latency reporter (issue 4, not built yet).
//!
//! Until it exists this binary says so and fails, rather than pretending to measure.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "moose-bench: the load generator is not built yet; see docs/architecture.md \
         (\"Not built yet\") and relay/examples/steering_cost.rs for the one measurement so far"
    );
    ExitCode::from(2)
}
