//! What the per-address limits count by: one client, as far as its address tells.
//!
//! An IPv4 address is one client (or one NAT in front of several). An IPv6 host is not one
//! address: a site or a single host gets a /64 (RFC 6177, and SLAAC needs one per link) and
//! may draw any of its 2^64 addresses for each connection, so counting whole IPv6 addresses
//! would give every attacker an unlimited supply of fresh budgets. Every per-address table
//! (connections, handshakes at once, handshake rate, failed apikeys, rooms) counts an IPv6
//! client by its /64 instead. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
//! socket reports for an IPv4 peer) is the IPv4 client it names.

use std::net::{IpAddr, Ipv6Addr};

/// Bits of an IPv6 address that name one client.
pub(crate) const IPV6_CLIENT_PREFIX: u32 = 64;

/// The key under which `ip` is counted: an IPv4 address as it is, an IPv6 address with all
/// but its first [`IPV6_CLIENT_PREFIX`] bits cleared.
pub(crate) fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_CLIENT_PREFIX);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn ipv4_addresses_are_counted_whole() {
        assert_eq!(client_of(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_ne!(client_of(ip("192.0.2.1")), client_of(ip("192.0.2.2")));
    }

    #[test]
    fn ipv6_addresses_are_counted_by_their_64() {
        let a = client_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"));
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_eq!(a, client_of(ip("2001:db8:1:2::1")));
        assert_ne!(
            a,
            client_of(ip("2001:db8:1:3::1")),
            "the next /64 is another"
        );
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_client() {
        assert_eq!(client_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        // Not to be confused with any other IPv6 address in ::/64.
        assert_eq!(client_of(ip("::1")), ip("::"));
    }
}
