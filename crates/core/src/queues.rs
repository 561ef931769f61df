//! Names of the pipeline's queues (pipeline §2.2), shared by the web tier
//! that fills them and the workers that drain them.

use crate::datamap::Quadrant;
use crate::mac::shard_suffix;
use crate::radio::Radio;

/// Reports from the submit APIs and sampled locate queries.
pub const UPDATE_INCOMING: &str = "update_incoming";
/// Area ids whose `cell_area` row needs recomputing.
pub const UPDATE_CELLAREA: &str = "update_cellarea";
/// Prefix of every export queue.
pub const EXPORT_PREFIX: &str = "queue_export_";

/// The queue of an export target; s3 targets have one per (source, api key)
/// partition: `queue_export_<name>:<source>:<api key or no_key>`.
pub fn export_queue(name: &str, partition: Option<(&str, Option<&str>)>) -> String {
    match partition {
        None => format!("{EXPORT_PREFIX}{name}"),
        Some((source, key)) => {
            let key = key.filter(|k| !k.is_empty()).unwrap_or("no_key");
            format!("{EXPORT_PREFIX}{name}:{source}:{key}")
        }
    }
}

/// The export target a queue belongs to: `internal` for `queue_export_internal`
/// and `bk` for `queue_export_bk:gnss:no_key`; `None` for other queues. Finds the
/// queues of a deleted target (orphaned queues) to purge them.
pub fn export_target_of(queue: &str) -> Option<&str> {
    let rest = queue.strip_prefix(EXPORT_PREFIX)?;
    let name = rest.split(':').next().unwrap_or(rest);
    Some(name).filter(|n| !n.is_empty())
}

/// Bluetooth observations of a shard.
pub fn update_blue(shard: u8) -> String {
    format!("update_blue_{}", shard_suffix(shard))
}

/// Wi-Fi observations of a shard.
pub fn update_wifi(shard: u8) -> String {
    format!("update_wifi_{}", shard_suffix(shard))
}

/// Cell observations of a radio.
pub fn update_cell(radio: Radio) -> String {
    format!("update_cell_{}", radio.name())
}

/// Data-map grids of a quadrant.
pub fn update_datamap(quadrant: Quadrant) -> String {
    format!("update_datamap_{}", quadrant.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(export_queue("internal", None), "queue_export_internal");
        assert_eq!(
            export_queue("bk", Some(("gnss", None))),
            "queue_export_bk:gnss:no_key"
        );
        assert_eq!(
            export_queue("bk", Some(("query", Some("test")))),
            "queue_export_bk:query:test"
        );
        assert_eq!(export_target_of("queue_export_internal"), Some("internal"));
        assert_eq!(export_target_of("queue_export_bk:gnss:no_key"), Some("bk"));
        assert_eq!(export_target_of("queue_export_"), None);
        assert_eq!(export_target_of("update_incoming"), None);
        assert_eq!(update_wifi(15), "update_wifi_f");
        assert_eq!(update_cell(Radio::Nr), "update_cell_nr");
        assert_eq!(update_datamap(Quadrant::Sw), "update_datamap_sw");
    }
}
