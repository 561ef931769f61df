//! The Content-Security-Policy of the HTML pages: this server for everything,
//! plus exactly the hosts the configuration makes the pages load images from
//! (the map's base layer, the asset bucket) or fetch from (the asset bucket).

use super::SiteConfig;

/// The policy for `config`'s hosts.
pub fn content_security_policy(config: &SiteConfig) -> String {
    let mut img = vec!["'self'".to_string()];
    let mut connect = vec!["'self'".to_string()];
    if !config.map_base_url.is_empty() {
        match origin(&config.map_base_url) {
            Some(Origin::Remote(o)) => img.push(o),
            Some(Origin::Same) => {}
            None => {
                tracing::warn!(url = %config.map_base_url, "the map base URL has no usable host; the browser will refuse its tiles")
            }
        }
    }
    if let Some(asset) = &config.asset_url {
        match origin(asset) {
            Some(Origin::Remote(o)) => {
                img.push(o.clone());
                connect.push(o);
            }
            Some(Origin::Same) => {}
            None => {
                tracing::warn!(url = %asset, "the asset URL has no usable host; the browser will refuse its tiles")
            }
        }
    }
    img.dedup();
    format!(
        "default-src 'self'; connect-src {}; font-src 'self'; img-src {}; script-src 'self'; \
         style-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
        connect.join(" "),
        img.join(" ")
    )
}

/// Where a URL points, as a CSP source.
#[derive(Debug, PartialEq)]
enum Origin {
    /// A path on this server.
    Same,
    /// `scheme://host[:port]`; a `{s}` subdomain placeholder becomes `*`.
    Remote(String),
}

fn origin(url: &str) -> Option<Origin> {
    if url.starts_with('/') && !url.starts_with("//") {
        return Some(Origin::Same);
    }
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = authority.replacen("{s}.", "*.", 1);
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*' | '[' | ']'));
    valid.then(|| Origin::Remote(format!("{scheme}://{host}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_template_urls() {
        assert_eq!(
            origin("https://tile.openstreetmap.org/{z}/{x}/{y}.png"),
            Some(Origin::Remote("https://tile.openstreetmap.org".into()))
        );
        assert_eq!(
            origin("https://{s}.tile.example.org:8443/{z}/{x}/{y}.png"),
            Some(Origin::Remote("https://*.tile.example.org:8443".into()))
        );
        assert_eq!(
            origin("http://127.0.0.1:9/static"),
            Some(Origin::Remote("http://127.0.0.1:9".into()))
        );
        assert_eq!(origin("/static/tiles/"), Some(Origin::Same));
        assert_eq!(origin("ftp://x/"), None);
        assert_eq!(origin("https://{bad}/x"), None);
    }

    #[test]
    fn policy_names_exactly_the_hosts_in_use() {
        let config = SiteConfig {
            asset_url: Some("http://127.0.0.1:9/static".into()),
            ..SiteConfig::default()
        };
        assert_eq!(
            content_security_policy(&config),
            "default-src 'self'; connect-src 'self' http://127.0.0.1:9; font-src 'self'; \
             img-src 'self' https://tile.openstreetmap.org http://127.0.0.1:9; script-src 'self'; \
             style-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
        );
        let config = SiteConfig {
            map_base_url: String::new(),
            ..SiteConfig::default()
        };
        assert!(content_security_policy(&config).contains("img-src 'self';"));
    }
}
