//! The outbound network guard: may medcall open a connection to this address?
//!
//! A [`NetGuard`] holds two lists of networks from configuration, `allow` and `deny`,
//! over a fixed set of networks that are refused by default because reaching them from
//! a URL a client supplied is how server-side request forgery reads what it must not:
//! loopback (`127.0.0.0/8`, `::1`), link-local (`169.254.0.0/16`, `fe80::/10`, which
//! holds the cloud metadata service `169.254.169.254`; its IPv6 form `fd00:ec2::254`),
//! unspecified (`0.0.0.0/8`, `::`), multicast (`224.0.0.0/4`, `ff00::/8`), the limited
//! broadcast `255.255.255.255` and the reserved `240.0.0.0/4`. An IPv4-mapped IPv6
//! address (`::ffff:127.0.0.1`) and the NAT64 form of an IPv4 address (`64:ff9b::/96`)
//! are judged as the IPv4 address they carry, so no spelling gets past a rule.
//!
//! Private ranges (`10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, `fc00::/7`) are
//! **allowed** by default: a clinic's file server is on its LAN. Put them in `deny` to
//! refuse them.
//!
//! Precedence: an explicit `deny` wins over everything; then an explicit `allow` wins
//! over the default refusals; anything else not refused by default is allowed.
//!
//! The guard only judges addresses; it never resolves or connects (see `media::fetch`,
//! and later the webhook outbox, which resolve, check every address, then connect to
//! exactly the checked one).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address and a prefix length (`10.0.0.0/8`, `fe80::/10`, or a bare
/// address meaning one host). Host bits below the prefix are ignored when matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A network that did not parse, with the text it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a network (address/prefix): {0:?}")]
pub struct CidrError(pub String);

impl Cidr {
    /// `addr/prefix`; `None` when the prefix is longer than the address family allows.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside this network (same family only; callers canonicalise).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(s.to_owned());
        let text = s.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => {
                // Only plain decimal digits: `u8::from_str` would also take "+8".
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                (a, Some(p.parse::<u8>().map_err(|_| bad())?))
            }
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix = prefix.unwrap_or(match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        });
        Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// In the configured `deny` list.
    Denied,
    Loopback,
    /// A cloud metadata service address.
    Metadata,
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
    Reserved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Denied => "a denied network",
            Refusal::Loopback => "a loopback address",
            Refusal::Metadata => "a cloud metadata address",
            Refusal::LinkLocal => "a link-local address",
            Refusal::Unspecified => "an unspecified address",
            Refusal::Multicast => "a multicast address",
            Refusal::Broadcast => "a broadcast address",
            Refusal::Reserved => "a reserved address",
        })
    }
}

/// The networks refused unless allowed, most specific first so the reason given for
/// `169.254.169.254` is "metadata", not "link-local".
const DEFAULT_REFUSED: &[(IpAddr, u8, Refusal)] = &[
    (v4(169, 254, 169, 254), 32, Refusal::Metadata),
    (
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
        128,
        Refusal::Metadata,
    ),
    (v4(255, 255, 255, 255), 32, Refusal::Broadcast),
    (v4(0, 0, 0, 0), 8, Refusal::Unspecified),
    (v4(127, 0, 0, 0), 8, Refusal::Loopback),
    (v4(169, 254, 0, 0), 16, Refusal::LinkLocal),
    (v4(224, 0, 0, 0), 4, Refusal::Multicast),
    (v4(240, 0, 0, 0), 4, Refusal::Reserved),
    (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 128, Refusal::Unspecified),
    (IpAddr::V6(Ipv6Addr::LOCALHOST), 128, Refusal::Loopback),
    (
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
        10,
        Refusal::LinkLocal,
    ),
    (
        IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)),
        8,
        Refusal::Multicast,
    ),
];

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// The allow/deny decision for outbound connections. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetGuard {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

impl NetGuard {
    /// A guard with these explicit lists over the default refusals.
    pub fn new(allow: Vec<Cidr>, deny: Vec<Cidr>) -> NetGuard {
        NetGuard { allow, deny }
    }

    /// A guard from configuration text (`["10.1.0.0/16", "fd12::/16"]`).
    ///
    /// # Errors
    /// The first entry that is not `address` or `address/prefix`.
    pub fn parse<S: AsRef<str>>(allow: &[S], deny: &[S]) -> Result<NetGuard, CidrError> {
        let list = |items: &[S]| {
            items
                .iter()
                .map(|s| s.as_ref().parse::<Cidr>())
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(NetGuard::new(list(allow)?, list(deny)?))
    }

    /// Whether a connection to `ip` may be opened.
    ///
    /// # Errors
    /// The reason it may not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let forms = forms(ip);
        let listed = |list: &[Cidr]| {
            forms
                .iter()
                .flatten()
                .any(|f| list.iter().any(|c| c.contains(*f)))
        };
        if listed(&self.deny) {
            return Err(Refusal::Denied);
        }
        if listed(&self.allow) {
            return Ok(());
        }
        for form in forms.iter().flatten() {
            if let Some((_, _, why)) = DEFAULT_REFUSED.iter().find(|(net, prefix, _)| {
                Cidr {
                    addr: *net,
                    prefix: *prefix,
                }
                .contains(*form)
            }) {
                return Err(*why);
            }
        }
        Ok(())
    }
}

/// The address as given and, for the IPv6 spellings of an IPv4 address (mapped
/// `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`), the IPv4 address it reaches: a rule
/// matching either form applies.
fn forms(ip: IpAddr) -> [Option<IpAddr>; 2] {
    let IpAddr::V6(v6) = ip else {
        return [Some(ip), None];
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return [Some(ip), Some(IpAddr::V4(v4))];
    }
    let [a, b, c, d, e, f, g, h] = v6.segments();
    if [a, b, c, d, e, f] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [g1, g2] = g.to_be_bytes();
        let [h1, h2] = h.to_be_bytes();
        return [Some(ip), Some(v4(g1, g2, h1, h2))];
    }
    [Some(ip), None]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_refuses_loopback_link_local_metadata_unspecified_multicast_broadcast() {
        let g = NetGuard::default();
        for (addr, why) in [
            ("127.0.0.1", Refusal::Loopback),
            ("127.255.0.9", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("169.254.169.254", Refusal::Metadata),
            ("fd00:ec2::254", Refusal::Metadata),
            ("169.254.1.1", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("febf::1", Refusal::LinkLocal),
            ("0.0.0.0", Refusal::Unspecified),
            ("0.1.2.3", Refusal::Unspecified),
            ("::", Refusal::Unspecified),
            ("224.0.0.1", Refusal::Multicast),
            ("239.255.255.250", Refusal::Multicast),
            ("ff02::1", Refusal::Multicast),
            ("255.255.255.255", Refusal::Broadcast),
            ("240.0.0.1", Refusal::Reserved),
        ] {
            assert_eq!(g.check(ip(addr)), Err(why), "{addr}");
        }
    }

    #[test]
    fn ipv6_spellings_of_a_refused_ipv4_address_are_refused_too() {
        let g = NetGuard::default();
        assert_eq!(g.check(ip("::ffff:127.0.0.1")), Err(Refusal::Loopback));
        assert_eq!(
            g.check(ip("::ffff:169.254.169.254")),
            Err(Refusal::Metadata)
        );
        assert_eq!(g.check(ip("64:ff9b::7f00:1")), Err(Refusal::Loopback));
        assert_eq!(g.check(ip("::ffff:8.8.8.8")), Ok(()));
    }

    #[test]
    fn public_and_private_addresses_are_allowed_by_default() {
        let g = NetGuard::default();
        for addr in [
            "8.8.8.8",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.10",
            "fc00::1",
            "fd12:3456::1",
            "2001:db8::1",
            "128.0.0.1",
            "126.255.255.255",
            "169.253.255.255",
            "223.255.255.255",
            "fec0::1",
        ] {
            assert_eq!(g.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn an_allow_entry_wins_over_a_default_refusal_and_a_deny_entry_over_everything() {
        let g = NetGuard::parse(&["127.0.0.1/32", "fe80::/10"], &[]).unwrap();
        assert_eq!(g.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(g.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(g.check(ip("127.0.0.2")), Err(Refusal::Loopback));
        assert_eq!(g.check(ip("fe80::5")), Ok(()));

        let g = NetGuard::parse(
            &["10.0.0.0/8", "127.0.0.1"],
            &["10.9.0.0/16", "127.0.0.0/8"],
        )
        .unwrap();
        assert_eq!(g.check(ip("10.1.0.1")), Ok(()));
        assert_eq!(g.check(ip("10.9.3.4")), Err(Refusal::Denied));
        assert_eq!(g.check(ip("127.0.0.1")), Err(Refusal::Denied));
        assert_eq!(g.check(ip("::ffff:10.9.3.4")), Err(Refusal::Denied));
    }

    #[test]
    fn denying_private_ranges_refuses_the_lan() {
        let g = NetGuard::parse(
            &[] as &[&str],
            &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
        )
        .unwrap();
        for addr in ["10.0.0.1", "172.20.1.1", "192.168.0.1", "fd00::1"] {
            assert_eq!(g.check(ip(addr)), Err(Refusal::Denied), "{addr}");
        }
        assert_eq!(g.check(ip("172.32.0.1")), Ok(()));
        assert_eq!(g.check(ip("8.8.4.4")), Ok(()));
    }

    #[test]
    fn a_prefix_of_zero_matches_its_whole_family_only() {
        let g = NetGuard::parse(&[] as &[&str], &["0.0.0.0/0"]).unwrap();
        assert_eq!(g.check(ip("8.8.8.8")), Err(Refusal::Denied));
        assert_eq!(g.check(ip("2001:db8::1")), Ok(()));
        let g = NetGuard::parse(&[] as &[&str], &["::/0"]).unwrap();
        assert_eq!(g.check(ip("2001:db8::1")), Err(Refusal::Denied));
        assert_eq!(g.check(ip("8.8.8.8")), Ok(()));
    }

    #[test]
    fn networks_parse_strictly() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>(),
            Ok(Cidr::new(ip("10.0.0.0"), 8).unwrap())
        );
        assert_eq!(
            " 192.168.1.7 ".parse::<Cidr>(),
            Ok(Cidr::new(ip("192.168.1.7"), 32).unwrap())
        );
        assert_eq!(
            "fe80::/10".parse::<Cidr>().unwrap().to_string(),
            "fe80::/10"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "host/8",
            "",
            "/8",
            "10.0.0.0/0008",
            "10.0.0.0/8/8",
        ] {
            assert_eq!(bad.parse::<Cidr>(), Err(CidrError(bad.to_owned())), "{bad}");
        }
        assert!(NetGuard::parse(&["10.0.0.0/8", "nope"], &[]).is_err());
        assert!(NetGuard::parse(&[], &["nope"]).is_err());
    }

    #[test]
    fn each_refusal_reads_as_the_kind_of_address() {
        assert_eq!(Refusal::Metadata.to_string(), "a cloud metadata address");
        assert_eq!(Refusal::Loopback.to_string(), "a loopback address");
        assert_eq!(Refusal::Denied.to_string(), "a denied network");
    }

    #[test]
    fn host_bits_below_the_prefix_do_not_matter() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert!(c.contains(ip("10.200.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(
            !c.contains(ip("::ffff:10.0.0.1")),
            "families never mix inside Cidr"
        );
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c.contains(ip("2001:db8:ffff::1")));
        assert!(!c.contains(ip("2001:db9::1")));
        let c: Cidr = "192.168.1.1/31".parse().unwrap();
        assert!(c.contains(ip("192.168.1.0")));
        assert!(!c.contains(ip("192.168.1.2")));
    }
}
