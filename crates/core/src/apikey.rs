//! API keys: the `api_key` table's row, its defaults, validation and partial updates.

use serde::{Deserialize, Deserializer, Serialize};

use crate::validation::{FieldError, check_len, check_non_negative, check_percent};

/// Wire protocols an external fallback provider can speak.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FallbackSchema {
    /// `ichnaea/v1` (also what NULL means): the geolocate format itself.
    Ichnaea,
    /// `combain/v1`.
    Combain,
    /// `googlemaps/v1`.
    GoogleMaps,
    /// `unwiredlabs/v1`.
    UnwiredLabs,
}

impl FallbackSchema {
    /// Every schema.
    pub const ALL: [FallbackSchema; 4] = [
        FallbackSchema::Ichnaea,
        FallbackSchema::Combain,
        FallbackSchema::GoogleMaps,
        FallbackSchema::UnwiredLabs,
    ];

    /// The stored text (`ichnaea/v1`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackSchema::Ichnaea => "ichnaea/v1",
            FallbackSchema::Combain => "combain/v1",
            FallbackSchema::GoogleMaps => "googlemaps/v1",
            FallbackSchema::UnwiredLabs => "unwiredlabs/v1",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<FallbackSchema> {
        FallbackSchema::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One row of `api_key` (api §7.1). `None` is SQL NULL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The key text clients send as `?key=`.
    pub valid_key: String,
    /// Daily request limit per endpoint; NULL or 0 = unlimited.
    pub maxreq: Option<i64>,
    /// May use `/v1/geolocate`.
    pub allow_locate: Option<bool>,
    /// May use `/v1/country`.
    pub allow_region: Option<bool>,
    /// May use the external fallback provider.
    pub allow_fallback: Option<bool>,
    /// Provider name; partitions the provider rate limit.
    pub fallback_name: Option<String>,
    /// Provider protocol (`ichnaea/v1`, `combain/v1`, `googlemaps/v1`, `unwiredlabs/v1`).
    pub fallback_schema: Option<String>,
    /// Provider endpoint (http or https).
    pub fallback_url: Option<String>,
    /// Provider calls allowed per interval; 0 = no limit.
    pub fallback_ratelimit: Option<i64>,
    /// Rate-limit window in seconds.
    pub fallback_ratelimit_interval: Option<i64>,
    /// Seconds to cache provider answers; NULL/0 = no caching.
    pub fallback_cache_expire: Option<i64>,
    /// Percentage of good locate queries kept as `query` reports.
    pub store_sample_locate: Option<i16>,
    /// Percentage of submit requests kept.
    pub store_sample_submit: Option<i16>,
}

/// Whether `text` is usable as an API key: 4–40 ASCII letters, digits or `-`.
pub fn is_valid_key_text(text: &str) -> bool {
    (4..=40).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `url` is an absolute http(s) URL with a host.
pub fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && !url.contains(char::is_whitespace)
        }
        None => false,
    }
}

impl ApiKey {
    /// A new key with the creation defaults: unlimited requests, locate and region
    /// allowed, no fallback, every locate and submit request sampled in (100 %).
    pub fn new(valid_key: impl Into<String>) -> ApiKey {
        ApiKey {
            valid_key: valid_key.into(),
            maxreq: None,
            allow_locate: Some(true),
            allow_region: Some(true),
            allow_fallback: Some(false),
            fallback_name: None,
            fallback_schema: None,
            fallback_url: None,
            fallback_ratelimit: None,
            fallback_ratelimit_interval: None,
            fallback_cache_expire: None,
            store_sample_locate: Some(100),
            store_sample_submit: Some(100),
        }
    }

    /// Refuses values the service could not use, naming the first bad column.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !is_valid_key_text(&self.valid_key) {
            return Err(FieldError::new(
                "valid_key",
                "must be 4 to 40 characters of A-Z, a-z, 0-9 and -",
            ));
        }
        check_non_negative("maxreq", self.maxreq)?;
        check_len("fallback_name", self.fallback_name.as_deref(), 40)?;
        if let Some(schema) = &self.fallback_schema
            && FallbackSchema::parse(schema).is_none()
        {
            return Err(FieldError::new(
                "fallback_schema",
                format!(
                    "{schema:?} is not one of {}",
                    FallbackSchema::ALL.map(|s| s.as_str()).join(", ")
                ),
            ));
        }
        if let Some(url) = &self.fallback_url {
            if !is_http_url(url) {
                return Err(FieldError::new(
                    "fallback_url",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
            check_len("fallback_url", Some(url), 256)?;
        }
        check_non_negative("fallback_ratelimit", self.fallback_ratelimit)?;
        check_non_negative(
            "fallback_ratelimit_interval",
            self.fallback_ratelimit_interval,
        )?;
        check_non_negative("fallback_cache_expire", self.fallback_cache_expire)?;
        check_percent("store_sample_locate", self.store_sample_locate)?;
        check_percent("store_sample_submit", self.store_sample_submit)?;
        Ok(())
    }
}

/// Reads a JSON member so that "absent" (`None`) and `null` (`Some(None)`) differ.
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// A partial update of an [`ApiKey`]: `None` leaves a column alone, `Some(None)`
/// sets it to NULL, `Some(Some(v))` sets it to `v`. Shared by the CLI and the admin API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ApiKeyPatch {
    #[serde(default, deserialize_with = "double_option")]
    pub maxreq: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub allow_locate: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double_option")]
    pub allow_region: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double_option")]
    pub allow_fallback: Option<Option<bool>>,
    #[serde(default, deserialize_with = "double_option")]
    pub fallback_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub fallback_schema: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub fallback_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub fallback_ratelimit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub fallback_ratelimit_interval: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub fallback_cache_expire: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub store_sample_locate: Option<Option<i16>>,
    #[serde(default, deserialize_with = "double_option")]
    pub store_sample_submit: Option<Option<i16>>,
}

macro_rules! apply_fields {
    ($patch:expr, $row:expr, $($f:ident),*) => {
        $( if let Some(v) = $patch.$f.clone() { $row.$f = v; } )*
    };
}

impl ApiKeyPatch {
    /// Applies the patch to `row` (validation is the caller's next step).
    pub fn apply(&self, row: &mut ApiKey) {
        apply_fields!(
            self,
            row,
            maxreq,
            allow_locate,
            allow_region,
            allow_fallback,
            fallback_name,
            fallback_schema,
            fallback_url,
            fallback_ratelimit,
            fallback_ratelimit_interval,
            fallback_cache_expire,
            store_sample_locate,
            store_sample_submit
        );
    }
}

/// The `key` label of an API key's metrics: `k` and the first 12 hex digits
/// of the key's SHA-256. Metrics are read by more people than the keys are
/// shown to, so they never carry the key itself; the label is stable across
/// processes, and `ichnaea apikey show` prints it next to the key.
pub fn metric_label(valid_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(valid_key.as_bytes());
    let mut label = String::with_capacity(13);
    label.push('k');
    for byte in &digest[..6] {
        label.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        label.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_are_digests_not_keys() {
        // SHA-256("test") = 9f86d081884c7d65…
        assert_eq!(metric_label("test"), "k9f86d081884c");
        assert_ne!(metric_label("test"), metric_label("Test"));
        assert_eq!(metric_label("x").len(), 13);
    }

    #[test]
    fn key_text_rules() {
        assert!(is_valid_key_text("test"));
        assert!(is_valid_key_text("0d9e1f6c-7a2b-4c3d-8e9f-0a1b2c3d4e5f"));
        assert!(!is_valid_key_text("abc"));
        assert!(!is_valid_key_text("invalid_key"));
        assert!(!is_valid_key_text(&"a".repeat(41)));
        assert!(!is_valid_key_text("with space"));
    }

    #[test]
    fn validation_names_the_field() {
        let mut k = ApiKey::new("test");
        assert_eq!(k.validate(), Ok(()));
        k.store_sample_submit = Some(101);
        assert_eq!(k.validate().unwrap_err().field, "store_sample_submit");
        let mut k = ApiKey::new("test");
        k.fallback_url = Some("ftp://x".into());
        assert_eq!(k.validate().unwrap_err().field, "fallback_url");
        k.fallback_url = Some("https://fallback.example/v1/geolocate#TOKEN".into());
        assert_eq!(k.validate(), Ok(()));
        k.fallback_schema = Some("bogus/v1".into());
        assert_eq!(k.validate().unwrap_err().field, "fallback_schema");
        assert_eq!(
            ApiKey::new("x_y").validate().unwrap_err().field,
            "valid_key"
        );
    }

    #[test]
    fn patch_distinguishes_absent_and_null() {
        let p: ApiKeyPatch =
            serde_json::from_str(r#"{"maxreq": 10, "fallback_url": null}"#).unwrap();
        let mut k = ApiKey::new("test");
        k.fallback_url = Some("http://a".into());
        p.apply(&mut k);
        assert_eq!(k.maxreq, Some(10));
        assert_eq!(k.fallback_url, None);
        assert_eq!(k.allow_locate, Some(true));
        assert!(serde_json::from_str::<ApiKeyPatch>(r#"{"maxreqq": 1}"#).is_err());
    }
}
