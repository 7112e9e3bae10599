//! `controller.quorum.voters`: Kafka's static voter list, `id@host:port` items separated by
//! commas (an IPv6 host in brackets, `3@[::1]:9093`), parsed into the voter map that every
//! voter passes to `initialize` (so all of them must read the same map).

use std::collections::BTreeMap;

use super::types::VoterEndpoint;
use crate::error::{Error, Result};

const KEY: &str = "controller.quorum.voters";

/// Parses the voter list; refuses empty items, bad ids, bad ports and duplicate ids or
/// endpoints (two voters on one endpoint would vote twice).
pub fn parse_voters(value: &str) -> Result<BTreeMap<u64, VoterEndpoint>> {
    let mut voters = BTreeMap::new();
    for item in value.split(',').map(str::trim) {
        let bad = |why: &str| Error::config(KEY, format!("`{item}`: {why}"));
        let (id, endpoint) = item
            .split_once('@')
            .ok_or_else(|| bad("expected id@host:port"))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|&id| id <= i32::MAX as u64)
            .ok_or_else(|| bad("the id must be a node id (0 to 2^31-1)"))?;
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| bad("expected id@host:port"))?;
        let host = match host.strip_prefix('[') {
            Some(h) => h
                .strip_suffix(']')
                .filter(|h| h.contains(':'))
                .ok_or_else(|| bad("an IPv6 host goes in brackets, as [::1]"))?,
            None if host.contains(':') => return Err(bad("an IPv6 host goes in brackets")),
            None => host,
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("the port must be 1 to 65535"))?;
        let endpoint = VoterEndpoint {
            host: host.to_string(),
            port,
        };
        if voters.values().any(|e| *e == endpoint) {
            return Err(bad("another voter has this endpoint"));
        }
        if voters.insert(id, endpoint).is_some() {
            return Err(bad("the id appears twice"));
        }
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_with_ipv6_and_spaces() {
        let v = parse_voters("1@c1:9093, 2@[::1]:9094,3@10.0.0.3:9093").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[&2].host, "::1");
        assert_eq!(v[&2].to_string(), "[::1]:9094");
        assert_eq!(v[&3].to_string(), "10.0.0.3:9093");
    }

    #[test]
    fn malformed_or_duplicate_voters_are_refused_naming_the_key() {
        for bad in [
            "",
            "1@c1:9093,",
            "c1:9093",
            "x@c1:9093",
            "-1@c1:9093",
            "1@c1",
            "1@c1:0",
            "1@:9093",
            "1@::1:9093",
            "1@c1:9093,1@c2:9093",
            "1@c1:9093,2@c1:9093",
        ] {
            let e = parse_voters(bad).unwrap_err().to_string();
            assert!(e.contains(KEY), "{bad}: {e}");
        }
    }
}
