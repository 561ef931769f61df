//! The simulator's tests, one binary: `sim load` against a counting server,
//! the world and traffic generators' determinism and invariants, and an
//! accuracy run against the real router after traffic and a pipeline drain.

// Test code: a failed unwrap is a failed test with its message, and test
// helpers are not public API.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod accuracy;
mod load;
mod traffic;
mod world;
