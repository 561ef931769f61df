//! The simulator's tests, one binary: `sim load` against a counting server,
//! the world and traffic generators' determinism and invariants, and an
//! accuracy run against the real router after traffic and a pipeline drain.

mod accuracy;
mod load;
mod traffic;
mod world;
