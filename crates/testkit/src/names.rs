//! Names no other test, test process or person on the same servers uses.

/// 32 lowercase hex digits, unique across processes (a random UUID): for
/// schema names, key prefixes, directories.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
