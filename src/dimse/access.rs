//! Who may open an association: `dimse.allowed_callers` (calling AE title, optionally from an
//! address or CIDR block) and `dimse.accept_any_called_ae`, checked by dicom-ul while it
//! negotiates, with the peer's IP address. A refused caller gets A-ASSOCIATE-RJ
//! (rejected-permanent, service-user, calling-AE-title-not-recognized); the reason is kept so
//! the listener can count it and write a Security Alert to the audit trail. An empty list
//! accepts any caller.

use std::net::IpAddr;
use std::sync::Mutex;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};
use serde::Deserialize;

/// One `[[dimse.allowed_callers]]` entry as written in `proxy.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowedCaller {
    /// The calling AE title (compared without padding, case-sensitive).
    pub ae_title: String,
    /// An IP address or CIDR block the caller must come from; unset: any address.
    #[serde(default)]
    pub address: Option<String>,
}

/// An IP address or CIDR block (`10.0.0.0/8`, `192.168.1.7`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRule {
    net: IpAddr,
    prefix: u8,
}

impl AddressRule {
    pub fn parse(text: &str) -> Result<AddressRule, String> {
        let bad = || format!("{text:?} is not an IP address or CIDR block like \"10.0.0.0/8\"");
        let (ip, prefix) = match text.trim().split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (text.trim(), None),
        };
        let net: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(AddressRule { net, prefix })
    }

    /// Does `peer` fall inside? IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`) match IPv4 rules.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, peer) {
            (IpAddr::V4(n), IpAddr::V4(p)) => same_prefix(&n.octets(), &p.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(p)) => same_prefix(&n.octets(), &p.octets(), self.prefix),
            _ => false,
        }
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The calling AE title is not in `dimse.allowed_callers`.
    UnknownCaller { calling_ae: String },
    /// The calling AE title is listed, but not from this address.
    WrongAddress { calling_ae: String },
    /// `accept_any_called_ae = false` and the peer called another AE title.
    WrongCalledAe { called_ae: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownCaller { calling_ae } => {
                write!(
                    f,
                    "calling AE title {calling_ae:?} is not an allowed caller"
                )
            }
            Refusal::WrongAddress { calling_ae } => {
                write!(
                    f,
                    "calling AE title {calling_ae:?} is not allowed from this address"
                )
            }
            Refusal::WrongCalledAe { called_ae } => {
                write!(f, "called AE title {called_ae:?} is not ours")
            }
        }
    }
}

/// The parsed `allowed_callers` list.
#[derive(Debug, Clone, Default)]
pub struct CallerPolicy {
    rules: Vec<(String, Option<AddressRule>)>,
}

impl CallerPolicy {
    pub fn new(callers: &[AllowedCaller]) -> Result<CallerPolicy, String> {
        let rules = callers
            .iter()
            .map(|c| {
                let address = c.address.as_deref().map(AddressRule::parse).transpose()?;
                Ok((c.ae_title.trim().to_string(), address))
            })
            .collect::<Result<_, String>>()?;
        Ok(CallerPolicy { rules })
    }

    /// Accept `calling_ae` from `peer`? An empty policy accepts anyone.
    pub fn check(&self, calling_ae: &str, peer: IpAddr) -> Result<(), Refusal> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let calling_ae = calling_ae.trim();
        let mut listed = false;
        for (ae, address) in &self.rules {
            if ae != calling_ae {
                continue;
            }
            listed = true;
            if address.is_none_or(|a| a.contains(peer)) {
                return Ok(());
            }
        }
        let calling_ae = calling_ae.to_string();
        Err(if listed {
            Refusal::WrongAddress { calling_ae }
        } else {
            Refusal::UnknownCaller { calling_ae }
        })
    }
}

/// dicom-ul's access control for one incoming connection: the caller policy with the peer's
/// address, and the Called AE title check. Remembers why it refused.
pub struct CallerCheck<'a> {
    pub policy: &'a CallerPolicy,
    pub peer: IpAddr,
    pub accept_any_called_ae: bool,
    pub refusal: &'a Mutex<Option<Refusal>>,
}

impl AccessControl for CallerCheck<'_> {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let verdict =
            if !self.accept_any_called_ae && called_ae_title.trim() != this_ae_title.trim() {
                Err((
                    Refusal::WrongCalledAe {
                        called_ae: called_ae_title.trim().to_string(),
                    },
                    AssociationRJServiceUserReason::CalledAETitleNotRecognized,
                ))
            } else {
                self.policy.check(calling_ae_title, self.peer).map_err(|r| {
                    (
                        r,
                        AssociationRJServiceUserReason::CallingAETitleNotRecognized,
                    )
                })
            };
        verdict.map_err(|(refusal, reason)| {
            if let Ok(mut slot) = self.refusal.lock() {
                *slot = Some(refusal);
            }
            reason
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks() {
        let r = AddressRule::parse("10.0.0.0/8").unwrap();
        assert!(r.contains(ip("10.200.1.2")) && !r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.1.2.3")));
        let one = AddressRule::parse("192.168.1.7").unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let odd = AddressRule::parse("172.16.0.0/12").unwrap();
        assert!(odd.contains(ip("172.31.255.255")) && !odd.contains(ip("172.32.0.0")));
        let v6 = AddressRule::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(AddressRule::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "host", "::/129", "1.2.3.4/x"] {
            assert!(AddressRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy() {
        let callers = [
            AllowedCaller {
                ae_title: "HOSPA".into(),
                address: Some("10.0.0.0/8".into()),
            },
            AllowedCaller {
                ae_title: "MODALITY".into(),
                address: None,
            },
        ];
        let p = CallerPolicy::new(&callers).unwrap();
        assert_eq!(p.check("HOSPA ", ip("10.1.1.1")), Ok(()));
        assert_eq!(p.check("MODALITY", ip("203.0.113.9")), Ok(()));
        assert!(matches!(
            p.check("HOSPA", ip("192.168.0.1")),
            Err(Refusal::WrongAddress { .. })
        ));
        assert!(matches!(
            p.check("UNKNOWN", ip("10.1.1.1")),
            Err(Refusal::UnknownCaller { .. })
        ));
        assert_eq!(CallerPolicy::default().check("ANY", ip("1.2.3.4")), Ok(()));
    }
}
