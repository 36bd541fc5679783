//! What a caller may read: a principal's facility (`[[facility]]` in `proxy.toml`) names the
//! sources whose studies it may see: upstream PACS by name, and `"local"` for studies pushed
//! to us. With no `[[facility]]` configured every authenticated caller sees everything; once
//! one is, a caller without a known facility sees nothing (fail closed) unless it holds the
//! admin role. A study's sources are the upstreams it was retrieved from (the `retrieval`
//! table), `"local"` for a cached study never retrieved, and the upstreams a federated search
//! found it in. A facility with `referred_only = true` further sees only the studies of
//! patients referred to it (see `referral`). Denied studies look exactly like missing ones
//! (QIDO drops the row, WADO-RS answers the same 404).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use super::Principal;

/// The source name of studies pushed to us over DIMSE.
pub const LOCAL: &str = "local";

/// One `[[facility]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilityConfig {
    /// The value of the facility claim (or of an API key's `facility`).
    pub name: String,
    /// Sources it may read: `[[upstream]]` names and `"local"`.
    pub upstreams: Vec<String>,
    /// Only studies of patients referred to this facility (`/admin/referrals`, or prefetch
    /// jobs naming it in `referred_to`).
    #[serde(default)]
    pub referred_only: bool,
    /// How long a referral lasts when it names no end: from the job's due time (or from its
    /// creation).
    #[serde(
        default = "default_referral_validity",
        with = "crate::config::human_duration"
    )]
    pub referral_validity: Duration,
}

fn default_referral_validity() -> Duration {
    Duration::from_secs(90 * 86400)
}

/// What one request may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// Studies from any of `sources`; with `referred_to`, only those of patients referred to
    /// that facility.
    Facility {
        sources: HashSet<String>,
        referred_to: Option<String>,
    },
}

impl Scope {
    /// The scope of `principal` under the configured facilities.
    pub fn of(principal: &Principal, facilities: &[FacilityConfig], admin_role: &str) -> Scope {
        if facilities.is_empty() || principal.has_role(admin_role) {
            return Scope::All;
        }
        let facility = principal
            .facility
            .as_deref()
            .and_then(|f| facilities.iter().find(|c| c.name == f));
        match facility {
            None => Scope::Facility {
                sources: HashSet::new(),
                referred_to: None,
            },
            Some(f) => Scope::Facility {
                sources: f.upstreams.iter().cloned().collect(),
                referred_to: f.referred_only.then(|| f.name.clone()),
            },
        }
    }

    /// May a study with these sources be seen (before any referral rule)?
    pub fn allows<'a>(&self, mut sources: impl Iterator<Item = &'a str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Facility { sources: ok, .. } => sources.any(|s| ok.contains(s)),
        }
    }

    /// The facility whose referrals decide, when it is `referred_only`.
    pub fn referred_to(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Facility { referred_to, .. } => referred_to.as_deref(),
        }
    }

    pub fn is_all(&self) -> bool {
        *self == Scope::All
    }
}

/// The sources of cached studies, from the index: upstreams retrieved from, else `"local"`.
pub fn cached_sources(
    conn: &rusqlite::Connection,
    studies: &[String],
) -> Result<HashMap<String, Vec<String>>, rusqlite::Error> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut cached = conn.prepare_cached("SELECT 1 FROM study WHERE study_uid = ?1")?;
    let mut retrieved =
        conn.prepare_cached("SELECT DISTINCT upstream FROM retrieval WHERE study_uid = ?1")?;
    for study in studies {
        let mut from: Vec<String> = retrieved
            .query_map([study], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        from.retain(|u| !u.is_empty());
        if from.is_empty() && cached.exists([study])? {
            from.push(LOCAL.into());
        }
        if !from.is_empty() {
            out.insert(study.clone(), from);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;

    fn who(facility: Option<&str>, roles: &[&str]) -> Principal {
        Principal {
            user: "u".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            facility: facility.map(String::from),
            method: Method::Token,
        }
    }

    #[test]
    fn scopes() {
        let f = vec![FacilityConfig {
            name: "clinic-a".into(),
            upstreams: vec!["hospital-a".into(), LOCAL.into()],
            referred_only: false,
            referral_validity: default_referral_validity(),
        }];
        assert!(Scope::of(&who(None, &[]), &[], "adm").is_all());
        assert!(Scope::of(&who(None, &["adm"]), &f, "adm").is_all());
        let a = Scope::of(&who(Some("clinic-a"), &[]), &f, "adm");
        assert!(a.allows(["hospital-b", "local"].into_iter()));
        assert!(!a.allows(["hospital-b"].into_iter()));
        let unknown = Scope::of(&who(Some("clinic-z"), &[]), &f, "adm");
        assert!(!unknown.allows(["local"].into_iter()));
        assert!(!Scope::of(&who(None, &[]), &f, "adm").allows(["local"].into_iter()));
        assert_eq!(a.referred_to(), None);
        let referred = vec![FacilityConfig {
            referred_only: true,
            ..f[0].clone()
        }];
        let r = Scope::of(&who(Some("clinic-a"), &[]), &referred, "adm");
        assert_eq!(r.referred_to(), Some("clinic-a"));
    }
}
