//! Where the load goes: the endpoint URL, and the rule that only loopback targets
//! are loaded unless the operator explicitly allows a remote one, so that load is
//! never sent to a machine by mistake; the check happens before any request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use std::time::Duration;

use reqwest::{Client, Url, redirect};

use crate::{Endpoint, SimError};

/// Whether `host` (as in a URL: an IPv4 address, a bracketed IPv6 address or a
/// name) is a loopback address: 127.0.0.0/8, `::1` (also IPv4-mapped
/// `::ffff:127.x.y.z`) or the name `localhost`. Other names are not resolved: a
/// name is never trusted to point at this machine.
pub fn is_loopback_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| is_loopback(ip.into()));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return is_loopback(ip);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    name.eq_ignore_ascii_case("localhost")
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4: Ipv4Addr| v4.is_loopback())
        }
    }
}

/// The URL requests go to: `base` with the endpoint path appended to its path and
/// `?key=` when a key is given. Refuses anything but absolute `http://` URLs (the
/// simulator is built without TLS) and, without `allow_remote`, non-loopback hosts.
pub fn endpoint_url(
    base: &str,
    endpoint: Endpoint,
    key: Option<&str>,
    allow_remote: bool,
) -> Result<Url, SimError> {
    let invalid = |reason: &str| SimError::InvalidUrl {
        url: base.to_string(),
        reason: reason.to_string(),
    };
    let mut url = Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(invalid(
                "https is not supported (built without TLS); use http",
            ));
        }
        _ => return Err(invalid("the scheme must be http")),
    }
    let host = url
        .host_str()
        .ok_or_else(|| invalid("no host"))?
        .to_string();
    if !allow_remote && !is_loopback_host(&host) {
        return Err(SimError::RemoteTarget { host });
    }
    let path = format!("{}{}", url.path().trim_end_matches('/'), endpoint.path());
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    if let Some(key) = key {
        url.query_pairs_mut().append_pair("key", key);
    }
    Ok(url)
}

/// The HTTP client of every simulation: requests go to the given address only
/// (no proxy, no redirect), each bounded by `timeout`, with up to `idle_per_host`
/// keep-alive connections. reqwest is built without a default TLS provider (the
/// binary shares rustls with the pipeline's exporters), so the ring provider is
/// installed first.
pub fn http_client(timeout: Duration, idle_per_host: usize) -> Result<Client, SimError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .redirect(redirect::Policy::none())
        .pool_max_idle_per_host(idle_per_host)
        .timeout(timeout)
        .tcp_nodelay(true)
        .user_agent(concat!("ichnaea-sim/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(SimError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "127.255.255.255",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]",
            "localhost",
            "LOCALHOST",
            "localhost.",
        ] {
            assert!(is_loopback_host(host), "{host} refused");
        }
    }

    #[test]
    fn remote_hosts() {
        for host in [
            "0.0.0.0",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "128.0.0.1",
            "8.8.8.8",
            "[::]",
            "[fe80::1]",
            "[::ffff:10.0.0.1]",
            "example.com",
            "localhost.example.com",
            "mylocalhost",
        ] {
            assert!(!is_loopback_host(host), "{host} accepted");
        }
    }

    #[test]
    fn urls_are_checked_before_anything_is_sent() {
        let ok = |u: &str| endpoint_url(u, Endpoint::Geosubmit, None, false);
        assert_eq!(
            ok("http://127.0.0.1:8000").map(String::from).ok(),
            Some("http://127.0.0.1:8000/v2/geosubmit".to_string())
        );
        assert_eq!(
            ok("http://localhost:8000/prefix/").map(String::from).ok(),
            Some("http://localhost:8000/prefix/v2/geosubmit".to_string())
        );
        // The URL parser normalises the short and hex forms before the check.
        assert!(ok("http://127.1:8000").is_ok());
        assert!(ok("http://0x7f.1:8000").is_ok());
        assert!(ok("http://[::1]:8000").is_ok());
        for remote in [
            "http://10.1.2.3:8000",
            "http://example.com",
            "http://0.0.0.0:8000",
            "http://[::]:8000",
            "http://user@192.168.0.1",
        ] {
            assert!(
                matches!(ok(remote), Err(SimError::RemoteTarget { .. })),
                "{remote} not refused"
            );
        }
        for invalid in [
            "127.0.0.1:8000",
            "https://127.0.0.1",
            "ftp://127.0.0.1",
            "nonsense",
        ] {
            assert!(
                matches!(ok(invalid), Err(SimError::InvalidUrl { .. })),
                "{invalid} not refused as invalid"
            );
        }
        let remote = endpoint_url("http://10.1.2.3:8000", Endpoint::Geolocate, None, true);
        assert_eq!(
            remote.map(String::from).ok(),
            Some("http://10.1.2.3:8000/v1/geolocate".to_string()),
            "--allow-remote lifts the refusal"
        );
        let keyed = endpoint_url(
            "http://127.0.0.1:8000/?x=1",
            Endpoint::Geolocate,
            Some("a b&c"),
            false,
        );
        assert_eq!(
            keyed.map(String::from).ok(),
            Some("http://127.0.0.1:8000/v1/geolocate?key=a+b%26c".to_string())
        );
    }
}
