//! The client's IP address, used for GeoIP and for counting unique users.
//!
//! A reverse proxy tells the client's address in `X-Forwarded-For`, appending
//! the address it received the request from to whatever the client sent. So
//! only the right-hand part of the header, written by proxies this server
//! trusts, is believed: walking from the right, the first address that is not
//! a trusted proxy is the client. A request whose peer is not a trusted proxy
//! is taken at its peer address, whatever the header says, so a client talking
//! to the server directly cannot choose the address it is located at.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The networks whose `X-Forwarded-For` is believed (configuration
/// `trusted_proxies`); cheap to clone.
#[derive(Clone, Debug, PartialEq)]
pub struct TrustedProxies(Arc<[IpNet]>);

/// A `trusted_proxies` entry that is not an address or CIDR network.
#[derive(Debug, thiserror::Error)]
#[error("{entry:?} is not an IP address or CIDR network")]
pub struct ProxyListError {
    /// The entry as written.
    pub entry: String,
}

impl Default for TrustedProxies {
    /// Loopback only (`127.0.0.0/8`, `::1`): a proxy on the same machine.
    fn default() -> Self {
        TrustedProxies::parse(["127.0.0.0/8", "::1/128"]).unwrap_or_else(|_| TrustedProxies::none())
    }
}

impl TrustedProxies {
    /// No proxy is trusted: the peer address is always the client.
    pub fn none() -> TrustedProxies {
        TrustedProxies(Arc::from([]))
    }

    /// Parses addresses (`10.0.0.1`, a single host) and networks (`10.0.0.0/8`).
    pub fn parse<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<TrustedProxies, ProxyListError> {
        let mut nets = Vec::new();
        for entry in entries {
            let text = entry.as_ref().trim();
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ProxyListError {
                    entry: text.to_string(),
                })?;
            nets.push(net);
        }
        Ok(TrustedProxies(nets.into()))
    }

    /// Whether `ip` is one of the trusted proxies (IPv4-mapped IPv6 addresses
    /// count as their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` with `headers`; `None` when the
    /// address that decides is not an IP address. Without a peer (a request made
    /// inside the process) the header is believed as if a proxy had sent it.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        if let Some(peer) = peer
            && !self.contains(peer)
        {
            return Some(peer);
        }
        let mut hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("").split(','))
            .map(|hop| hop.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        let mut nearest = peer;
        while let Some(hop) = hops.pop() {
            match hop {
                Some(ip) if self.contains(ip) => nearest = Some(ip),
                Some(ip) => return Some(ip),
                None => return None,
            }
        }
        // Every hop is a trusted proxy: the farthest one is the client.
        nearest
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_the_header_says() {
        let trusted = TrustedProxies::default();
        let h = headers(&["1.2.3.4"]);
        assert_eq!(
            trusted.client_ip(&h, Some(ip("203.0.113.9"))),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            trusted.client_ip(&HeaderMap::new(), Some(ip("203.0.113.9"))),
            Some(ip("203.0.113.9"))
        );
        let none = TrustedProxies::none();
        assert_eq!(
            none.client_ip(&h, Some(ip("127.0.0.1"))),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_behind_trusted_proxies_is_the_client() {
        let trusted = TrustedProxies::parse(["127.0.0.1", "10.0.0.0/8", "fd00::/8"]).unwrap();
        let peer = Some(ip("10.1.1.1"));
        // The client forged "1.1.1.1"; the edge proxy appended the real address.
        let h = headers(&["1.1.1.1, 198.51.100.7, 10.9.9.9"]);
        assert_eq!(trusted.client_ip(&h, peer), Some(ip("198.51.100.7")));
        // The same across several header lines.
        let h = headers(&["1.1.1.1", "198.51.100.7", "10.9.9.9"]);
        assert_eq!(trusted.client_ip(&h, peer), Some(ip("198.51.100.7")));
        // Only trusted hops: the farthest is the client.
        let h = headers(&["10.2.2.2, 10.3.3.3"]);
        assert_eq!(trusted.client_ip(&h, peer), Some(ip("10.2.2.2")));
        // No header: the trusted peer itself.
        assert_eq!(trusted.client_ip(&HeaderMap::new(), peer), peer);
        // The hop that decides is garbage: unknown.
        let h = headers(&["198.51.100.7, bogus"]);
        assert_eq!(trusted.client_ip(&h, peer), None);
        // IPv6 and IPv4-mapped peers.
        let h = headers(&["2001:db8::1"]);
        assert_eq!(
            trusted.client_ip(&h, Some(ip("fd00::2"))),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            trusted.client_ip(&h, Some(ip("::ffff:10.0.0.3"))),
            Some(ip("2001:db8::1"))
        );
    }

    #[test]
    fn in_process_requests_believe_the_header() {
        let trusted = TrustedProxies::default();
        assert_eq!(
            trusted.client_ip(&headers(&["192.0.2.1"]), None),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(trusted.client_ip(&HeaderMap::new(), None), None);
    }

    #[test]
    fn entries_are_checked() {
        assert!(TrustedProxies::parse(["10.0.0.0/8", " ::1 "]).is_ok());
        let e = TrustedProxies::parse(["10.0.0.0/33"]).unwrap_err();
        assert_eq!(e.entry, "10.0.0.0/33");
        assert!(TrustedProxies::parse(["proxy.example"]).is_err());
    }
}
