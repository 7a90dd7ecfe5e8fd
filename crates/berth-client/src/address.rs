//! `--registry`: one meaning in every command. A URL (`http://…`,
//! `https://…`) says exactly how to talk to the registry; a bare
//! `host[:port]` means HTTPS, except that a loopback registry (localhost,
//! 127.0.0.0/8, ::1) falls back to plain HTTP when HTTPS does not work —
//! what Docker and containerd do for such registries.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where a registry is, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAddress {
    /// The scheme the user wrote; `None` for a bare `host[:port]`.
    pub scheme: Option<Scheme>,
    /// `host[:port]` (IPv6 in brackets), as Docker credential files key it.
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{given}' is not a registry address: {reason} (give a URL such as https://registry.example or http://127.0.0.1:5000, or host[:port])")]
pub struct AddressError {
    pub given: String,
    pub reason: String,
}

impl FromStr for RegistryAddress {
    type Err = AddressError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| AddressError {
            given: given.chars().take(200).collect(),
            reason: reason.into(),
        };
        let trimmed = given.trim();
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
                "http" => (Some(Scheme::Http), rest),
                "https" => (Some(Scheme::Https), rest),
                _ => return Err(fail("only http:// and https:// are understood")),
            },
            None => (None, trimmed),
        };
        // A trailing `/` or `/v2/` is what people paste; any other path is
        // a mistake (registries live at the root).
        let host = rest
            .trim_end_matches('/')
            .trim_end_matches("/v2")
            .trim_end_matches('/');
        if host.is_empty() {
            return Err(fail("it names no host"));
        }
        if host.contains('/') {
            return Err(fail("a registry address has no path"));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '@' || c == '?' || c == '#') {
            return Err(fail("it holds characters a host name cannot"));
        }
        Ok(RegistryAddress {
            scheme,
            host: host.to_string(),
        })
    }
}

impl fmt::Display for RegistryAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Some(s) => write!(f, "{}://{}", s.as_str(), self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl RegistryAddress {
    /// The host without its port (IPv6 without brackets).
    pub fn hostname(&self) -> &str {
        let host = self.host.as_str();
        if let Some(rest) = host.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        match host.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        }
    }

    /// localhost, 127.0.0.0/8 or ::1: a registry only this machine reaches.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(self.hostname())
    }

    /// The schemes to try, in order: the one written, or HTTPS and — for a
    /// loopback registry — plain HTTP after it.
    pub fn schemes(&self) -> Vec<Scheme> {
        match self.scheme {
            Some(s) => vec![s],
            None if self.is_loopback() => vec![Scheme::Https, Scheme::Http],
            None => vec![Scheme::Https],
        }
    }

    /// `scheme://host`, without a trailing slash.
    pub fn url(&self, scheme: Scheme) -> String {
        format!("{}://{}", scheme.as_str(), self.host)
    }
}

/// Whether a host name (no port) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") || bare.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> RegistryAddress {
        s.parse().expect(s)
    }

    #[test]
    fn urls_and_bare_hosts() {
        let a = parse("http://127.0.0.1:5000/");
        assert_eq!(
            (a.scheme, a.host.as_str()),
            (Some(Scheme::Http), "127.0.0.1:5000")
        );
        assert_eq!(a.schemes(), [Scheme::Http]);
        let a = parse("https://r.example/v2/");
        assert_eq!(
            (a.scheme, a.host.as_str()),
            (Some(Scheme::Https), "r.example")
        );
        let a = parse("r.example:5000");
        assert_eq!((a.scheme, a.hostname()), (None, "r.example"));
        assert_eq!(a.schemes(), [Scheme::Https]);
        let a = parse("localhost:5000");
        assert_eq!(a.schemes(), [Scheme::Https, Scheme::Http]);
        let a = parse("[::1]:5000");
        assert_eq!(a.hostname(), "::1");
        assert!(a.is_loopback());
        assert!(parse("127.9.9.9").is_loopback());
        assert!(!parse("10.0.0.1:5000").is_loopback());
        assert_eq!(parse("HTTPS://r.example").to_string(), "https://r.example");
        for bad in ["", "ftp://r", "http://", "r.example/app", "a b"] {
            assert!(bad.parse::<RegistryAddress>().is_err(), "{bad}");
        }
    }
}
