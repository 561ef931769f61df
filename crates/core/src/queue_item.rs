//! The items of the report queues: the one contract between the web role, which
//! writes reports to `update_incoming`, and the pipeline, which reads them and
//! copies them to the export queues.
//!
//! Both sides use these types, so a producer cannot write an item the consumer
//! would read differently: an item without a known `source` does not decode at
//! all (it is counted and logged by the consumer), instead of being taken for a
//! GNSS report.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::source::ReportSource;

/// A report on `update_incoming`: who sent it, where its position came from,
/// and the report itself in the internal geosubmit-v2 form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncomingItem {
    /// The stored API key the report came with (`null` for anonymous reports).
    pub api_key: Option<String>,
    /// The position source (`fixed`, `gnss`, `fused`, `query`); required.
    pub source: ReportSource,
    /// The report object (`timestamp`, `position`, the network arrays, …).
    pub report: Map<String, Value>,
}

/// A report on an export queue (`queue_export_<name>…`): the incoming item
/// without its source, which the export target's queue partition carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportItem {
    /// The stored API key the report came with (`null` for anonymous reports).
    pub api_key: Option<String>,
    /// The report object, as it was on `update_incoming`.
    pub report: Map<String, Value>,
}

/// Why a queue item could not be read.
#[derive(Debug, thiserror::Error)]
#[error("undecodable queue item: {0}")]
pub struct ItemError(#[from] serde_json::Error);

impl IncomingItem {
    /// The item's bytes on the queue (JSON).
    pub fn encode(&self) -> Result<Vec<u8>, ItemError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// The bytes [`IncomingItem::encode`] writes for an item whose report is
    /// already JSON text — the web role converts submissions straight to text,
    /// so a report is never held as a `Value` tree. `report` must be the text
    /// of a JSON object.
    pub fn encode_raw(api_key: Option<&str>, source: ReportSource, report: &str) -> Vec<u8> {
        let key = match api_key {
            Some(key) => serde_json::Value::from(key).to_string(),
            None => "null".to_string(),
        };
        let mut out = Vec::with_capacity(report.len() + key.len() + 40);
        out.extend_from_slice(b"{\"api_key\":");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b",\"source\":\"");
        out.extend_from_slice(source.name().as_bytes());
        out.extend_from_slice(b"\",\"report\":");
        out.extend_from_slice(report.as_bytes());
        out.push(b'}');
        out
    }

    /// Reads an item written by [`IncomingItem::encode`]; a missing or unknown
    /// `source` or a report that is not an object is an error. Members this
    /// version does not know are ignored, so producers can add some first.
    pub fn decode(bytes: &[u8]) -> Result<IncomingItem, ItemError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The bytes of this report's [`ExportItem`], written without copying the report.
    pub fn encode_export(&self) -> Result<Vec<u8>, ItemError> {
        Ok(serde_json::to_vec(&ExportItemRef {
            api_key: self.api_key.as_deref(),
            report: &self.report,
        })?)
    }
}

/// [`ExportItem`]'s fields, borrowed from an [`IncomingItem`].
#[derive(Serialize)]
struct ExportItemRef<'a> {
    api_key: Option<&'a str>,
    report: &'a Map<String, Value>,
}

impl ExportItem {
    /// The item's bytes on an export queue (JSON).
    pub fn encode(&self) -> Result<Vec<u8>, ItemError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Reads an item written by [`ExportItem::encode`].
    pub fn decode(bytes: &[u8]) -> Result<ExportItem, ItemError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "timestamp": 1_700_000_000_000i64,
            "position": {"latitude": 51.5, "longitude": -0.1, "source": "fused"},
            "wifiAccessPoints": [{"macAddress": "01:23:45:67:89:ab", "signalStrength": -60}],
        }) else {
            unreachable!("a JSON object literal")
        };
        map
    }

    #[test]
    fn incoming_items_round_trip_for_every_source_and_key() {
        for source in ReportSource::ALL {
            for api_key in [None, Some("test-key".to_string())] {
                let item = IncomingItem {
                    api_key: api_key.clone(),
                    source,
                    report: report(),
                };
                let bytes = item.encode().unwrap();
                assert_eq!(IncomingItem::decode(&bytes).unwrap(), item);
                let text = Value::Object(report()).to_string();
                let raw = IncomingItem::encode_raw(api_key.as_deref(), source, &text);
                assert_eq!(raw, bytes, "the same bytes as encode");
                let quoted = IncomingItem::encode_raw(Some("a\"b"), source, &text);
                let decoded = IncomingItem::decode(&quoted).unwrap();
                assert_eq!(decoded.api_key.as_deref(), Some("a\"b"));
                let wire: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(wire["source"], json!(source.name()));
                assert_eq!(wire["api_key"], json!(api_key));
                let export = ExportItem::decode(&item.encode_export().unwrap()).unwrap();
                assert_eq!(export.api_key, api_key);
                assert_eq!(export.report, report());
                assert_eq!(
                    ExportItem::decode(&export.encode().unwrap()).unwrap(),
                    export
                );
            }
        }
    }

    #[test]
    fn items_without_a_known_source_do_not_decode() {
        let report = Value::Object(report());
        for bad in [
            json!({"api_key": null, "report": report}),
            json!({"api_key": null, "report": report, "source": "gps"}),
            json!({"api_key": null, "report": report, "source": null}),
            json!({"api_key": null, "report": report, "source": "GNSS"}),
            json!({"api_key": null, "report": [1], "source": "gnss"}),
            json!({"api_key": null, "source": "gnss"}),
            json!({"api_key": 5, "report": report, "source": "gnss"}),
        ] {
            let bytes = serde_json::to_vec(&bad).unwrap();
            assert!(IncomingItem::decode(&bytes).is_err(), "{bad}");
        }
        assert!(IncomingItem::decode(b"not json").is_err());
        // A missing key is anonymous, as `null` is.
        let bytes = serde_json::to_vec(&json!({"report": report, "source": "query"})).unwrap();
        let item = IncomingItem::decode(&bytes).unwrap();
        assert_eq!((item.api_key, item.source), (None, ReportSource::Query));
        // Members a newer producer may add are ignored, not fatal (rolling upgrades).
        let bytes =
            serde_json::to_vec(&json!({"report": report, "source": "gnss", "extra": 1})).unwrap();
        assert_eq!(
            IncomingItem::decode(&bytes).unwrap().source,
            ReportSource::Gnss
        );
    }
}
