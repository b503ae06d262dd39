//! Which hosts `http/request` may reach: operator allow and deny patterns (deny wins),
//! and cloud metadata addresses denied by default. Names are checked before every hop;
//! resolved addresses are checked by the broker's resolver, so a name that resolves to a
//! denied address is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Addresses denied unless the operator removes the default: cloud instance metadata.
const METADATA: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// A host pattern: `example.com`, `*.example.com`, an IP address, or an IP network in
/// CIDR form (`10.0.0.0/8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
    Net(IpAddr, u8),
}

impl std::str::FromStr for HostPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        if s.is_empty() {
            return Err("empty host pattern".into());
        }
        if let Some(rest) = s.strip_prefix("*.") {
            return Ok(HostPattern::Suffix(rest.to_string()));
        }
        if let Some((ip, bits)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|e| format!("`{s}`: {e}"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{s}`: bad prefix length"))?;
            return Ok(HostPattern::Net(ip, bits));
        }
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(HostPattern::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        Ok(HostPattern::Exact(s))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits as u32) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits as u32) };
            u128::from(a) & mask == u128::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a.to_ipv4_mapped().is_some_and(|a| in_net(IpAddr::V4(a), net, bits)),
        _ => false,
    }
}

impl HostPattern {
    fn matches_name(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host == h,
            HostPattern::Suffix(s) => {
                host.len() > s.len() && host.ends_with(s.as_str()) && host[..host.len() - s.len()].ends_with('.')
            }
            HostPattern::Net(net, bits) => host.parse::<IpAddr>().is_ok_and(|ip| in_net(ip, *net, *bits)),
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        matches!(self, HostPattern::Net(net, bits) if in_net(ip, *net, *bits))
    }
}

/// The operator's policy.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    pub allow: Vec<HostPattern>,
    pub deny: Vec<HostPattern>,
    /// Keep the metadata addresses reachable (off by default).
    pub allow_metadata: bool,
}

fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl HostPolicy {
    /// Checks a URL host (name or literal address) before a hop.
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let host = normalize(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_ip(ip)?;
        }
        if self.deny.iter().any(|p| p.matches_name(&host)) {
            return Err(format!("host `{host}` is denied by the server's http policy"));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|p| p.matches_name(&host)) {
            return Err(format!("host `{host}` is not in the server's http allow list"));
        }
        Ok(())
    }

    /// Checks a resolved (or literal) address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if !self.allow_metadata && METADATA.contains(&ip) {
            return Err(format!(
                "address {ip} (cloud metadata) is denied by the server's http policy"
            ));
        }
        if self.deny.iter().any(|p| p.matches_ip(ip)) {
            return Err(format!("address {ip} is denied by the server's http policy"));
        }
        Ok(())
    }
}

/// A resolver that drops denied addresses and fails when none is left.
pub struct PolicyResolver {
    pub policy: Arc<HostPolicy>,
}

/// The error a denied name resolves to (found again when errors are classified).
#[derive(Debug)]
pub struct PolicyDenied(pub String);

impl std::fmt::Display for PolicyDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyDenied {}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut denied = None;
            let kept: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        denied = Some(e);
                        false
                    }
                })
                .collect();
            if kept.is_empty()
                && let Some(reason) = denied
            {
                return Err(Box::new(PolicyDenied(format!(
                    "`{host}` resolves only to denied addresses: {reason}"
                ))) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().unwrap()
    }

    #[test]
    fn patterns() {
        assert!(p("*.example.com").matches_name("a.example.com"));
        assert!(!p("*.example.com").matches_name("example.com"));
        assert!(!p("*.example.com").matches_name("badexample.com"));
        assert!(p("Example.COM.").matches_name("example.com"));
        assert!(p("10.0.0.0/8").matches_ip("10.1.2.3".parse().unwrap()));
        assert!(!p("10.0.0.0/8").matches_ip("11.0.0.1".parse().unwrap()));
        assert!(p("fd00::/8").matches_ip("fd00:ec2::254".parse().unwrap()));
        assert!("10.0.0.0/40".parse::<HostPattern>().is_err());
    }

    #[test]
    fn deny_wins_and_metadata_is_denied() {
        let policy = HostPolicy {
            allow: vec![p("*.example.com"), p("evil.example.com")],
            deny: vec![p("evil.example.com")],
            allow_metadata: false,
        };
        assert!(policy.check_host("api.example.com").is_ok());
        assert!(policy.check_host("evil.example.com").is_err());
        assert!(policy.check_host("other.org").is_err());
        let open = HostPolicy::default();
        assert!(open.check_host("169.254.169.254").is_err());
        assert!(open.check_host("[fd00:ec2::254]").is_err());
        assert!(open.check_ip("::ffff:169.254.169.254".parse().unwrap()).is_err());
        assert!(open.check_host("127.0.0.1").is_ok());
        let permissive = HostPolicy {
            allow_metadata: true,
            ..HostPolicy::default()
        };
        assert!(permissive.check_host("169.254.169.254").is_ok());
    }
}
