//! What a Redis server must promise before it holds accepted reports: the
//! durability settings (an append-only file synced at least every second, no
//! eviction) and the topology (one server, not Redis Cluster), read at start.
//!
//! Why refuse cluster mode instead of supporting it: a queue's keys share one
//! hash tag, but `transfer` moves a batch from one queue to others in one Lua
//! script (that is what makes each stage exactly once), and the counters
//! touch keys of several names; Redis Cluster refuses such scripts
//! (`CROSSSLOT`) unless every key lives in one slot, i.e. on one node anyway.

use ::redis::{Client, Value};

use crate::QueueError;

/// The settings of a Redis server that decide whether it can lose reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durability {
    /// `appendonly` (`yes` wanted).
    pub appendonly: String,
    /// `appendfsync` (`everysec` or `always` wanted).
    pub appendfsync: String,
    /// `maxmemory-policy` (`noeviction` wanted).
    pub maxmemory_policy: String,
}

impl Durability {
    /// What is wrong with these settings, one phrase each; empty when nothing.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.appendonly != "yes" {
            out.push(format!(
                "appendonly is {:?} (a restart loses everything since the last snapshot; want \"yes\")",
                self.appendonly
            ));
        } else if !matches!(self.appendfsync.as_str(), "everysec" | "always") {
            out.push(format!(
                "appendfsync is {:?} (the OS decides when writes reach the disk; want \"everysec\" or \"always\")",
                self.appendfsync
            ));
        }
        if self.maxmemory_policy != "noeviction" {
            out.push(format!(
                "maxmemory-policy is {:?} (at maxmemory Redis deletes keys, queued reports among them; want \"noeviction\")",
                self.maxmemory_policy
            ));
        }
        out
    }
}

/// What a Redis server said about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerCheck {
    /// `INFO cluster` says `cluster_enabled:1`.
    pub cluster_enabled: bool,
    /// The durability settings, or why `CONFIG GET` could not read them (it is
    /// often disabled or renamed on managed services).
    pub durability: Result<Durability, String>,
}

impl ServerCheck {
    /// Every reason this server may lose accepted reports; empty when none.
    pub fn problems(&self) -> Vec<String> {
        match &self.durability {
            Ok(d) => d.problems(),
            Err(e) => vec![format!(
                "its durability settings cannot be read (CONFIG GET failed: {e}); check appendonly, appendfsync and maxmemory-policy yourself"
            )],
        }
    }
}

/// Asks the server at `url` for its topology (`INFO cluster`) and durability
/// settings (`CONFIG GET`). Only a failure to reach it is an error.
pub async fn check_server(url: &str) -> Result<ServerCheck, QueueError> {
    let mut conn = Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = ::redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await?;
    let cluster_enabled = info.lines().any(|line| line.trim() == "cluster_enabled:1");
    let mut settings = Vec::new();
    let mut failure = None;
    for name in ["appendonly", "appendfsync", "maxmemory-policy"] {
        let got: Result<Value, _> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut conn)
            .await;
        match got {
            Ok(value) => match config_value(&value, name) {
                Some(v) => settings.push(v),
                None => {
                    failure = Some(format!("no value for {name}"));
                    break;
                }
            },
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let durability = match (failure, settings.as_slice()) {
        (None, [appendonly, appendfsync, policy]) => Ok(Durability {
            appendonly: appendonly.clone(),
            appendfsync: appendfsync.clone(),
            maxmemory_policy: policy.clone(),
        }),
        (Some(e), _) => Err(e),
        (None, _) => Err("incomplete answer".into()),
    };
    Ok(ServerCheck {
        cluster_enabled,
        durability,
    })
}

/// The value of `name` in a `CONFIG GET` answer (a flat array or a map, by
/// protocol version).
fn config_value(value: &Value, name: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match value {
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| pair.first().and_then(text).as_deref() == Some(name))
            .and_then(|pair| pair.get(1).and_then(text)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(a: &str, f: &str, p: &str) -> Durability {
        Durability {
            appendonly: a.into(),
            appendfsync: f.into(),
            maxmemory_policy: p.into(),
        }
    }

    #[test]
    fn durable_settings_have_no_problems() {
        assert!(d("yes", "everysec", "noeviction").problems().is_empty());
        assert!(d("yes", "always", "noeviction").problems().is_empty());
    }

    #[test]
    fn each_weakness_is_named() {
        let p = d("no", "everysec", "allkeys-lru").problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("appendonly is \"no\""), "{p:?}");
        assert!(
            p[1].starts_with("maxmemory-policy is \"allkeys-lru\""),
            "{p:?}"
        );
        let p = d("yes", "no", "noeviction").problems();
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("appendfsync is \"no\""), "{p:?}");
    }
}
