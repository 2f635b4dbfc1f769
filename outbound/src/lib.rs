//! longhaul-outbound: requests longhaul makes to addresses a user gave it — a CSV at a URL,
//! a file attached in ChatGPT, an HTTP Task's endpoint. One policy for all of them, checked
//! at every hop, so that no job can make the server reach its own network (server-side
//! request forgery):
//!
//! - [`check_url`]: https only (http only when insecure requests are allowed, for local
//!   testing), a host, no credentials, no literal loopback/private/link-local address.
//! - [`send`] (feature `client`): resolves the name itself, refuses it if *any* address it
//!   resolves to is not public, pins the connection to the checked address (no second
//!   lookup to race), and follows redirects by hand (at most [`MAX_REDIRECTS`], GET and HEAD
//!   only), checking each again.

use std::net::IpAddr;

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub use client::{OutboundError, Request, send};

/// Redirects followed at most (GET and HEAD only).
pub const MAX_REDIRECTS: usize = 3;

/// What outbound requests may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Allow http and non-public addresses. For local testing only: it turns the protection
    /// against server-side request forgery off.
    pub allow_insecure: bool,
}

/// Checks a URL before any request: https (http only when insecure requests are allowed),
/// a host, no credentials, and no literal loopback, private, link-local or unspecified
/// address. Names are checked again when resolved ([`send`]).
pub fn check_url(url: &str, policy: OutboundPolicy) -> Result<url::Url, String> {
    let u = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let insecure = policy.allow_insecure;
    match u.scheme() {
        "https" => {}
        "http" if insecure => {}
        other => return Err(format!("the scheme must be https, not {other}")),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("URLs with credentials are not accepted".into());
    }
    match u.host() {
        None => return Err("the URL has no host".into()),
        Some(url::Host::Ipv4(ip)) if !insecure && !is_public_ip(IpAddr::V4(ip)) => {
            return Err(format!("{ip} is not a public address"));
        }
        Some(url::Host::Ipv6(ip)) if !insecure && !is_public_ip(IpAddr::V6(ip)) => {
            return Err(format!("{ip} is not a public address"));
        }
        Some(url::Host::Domain(d))
            if !insecure && {
                // A trailing dot names the same host.
                let d = d.trim_end_matches('.');
                d == "localhost" || d.ends_with(".localhost")
            } =>
        {
            return Err(format!("{d} is not a public address"));
        }
        Some(_) => {}
    }
    Ok(u)
}

/// Whether an address is on the public internet (not loopback, private, link-local, CGNAT,
/// unspecified, multicast, documentation or unique-local).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] == 0x2001 && seg[1] == 0x0db8))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: OutboundPolicy = OutboundPolicy {
        allow_insecure: false,
    };

    #[test]
    fn urls_must_be_https_to_public_addresses() {
        for ok in [
            "https://example.com/a.csv",
            "https://8.8.8.8/x",
            "https://[2606:4700::1111]/x",
        ] {
            assert!(check_url(ok, STRICT).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/a.csv",
            "https://127.0.0.1/x",
            "https://10.0.0.1/x",
            "https://172.16.5.4/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://localhost/x",
            "https://localhost./x",
            "https://a.localhost/x",
            "https://user:pw@example.com/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(check_url(bad, STRICT).is_err(), "{bad}");
        }
        let insecure = OutboundPolicy {
            allow_insecure: true,
        };
        assert!(
            check_url("http://127.0.0.1:8080/x", insecure).is_ok(),
            "allowed for local tests"
        );
        assert!(check_url("ftp://127.0.0.1/x", insecure).is_err());
    }
}
