//! Names of the pipeline's queues (spec pipeline §2.2), shared by the web tier
//! that fills them and the workers that drain them.

/// Reports from the submit APIs and sampled locate queries.
pub const UPDATE_INCOMING: &str = "update_incoming";
