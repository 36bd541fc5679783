//! What a caller may read: a principal's facility (`[[facility]]` in `proxy.toml`) names the
//! sources whose studies it may see: upstream PACS by name, and `"local"` for studies pushed
//! to us. With no `[[facility]]` configured every authenticated caller sees everything; once
//! one is, a caller without a known facility sees nothing (fail closed) unless it holds the
//! admin role. A study's sources are the upstreams it was retrieved from (the `retrieval`
//! table), `"local"` for a cached study never retrieved, and the upstreams a federated search
//! found it in. Denied studies look exactly like missing ones (QIDO drops the row, WADO-RS
//! answers the same 404).

use std::collections::{HashMap, HashSet};

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
}

/// What one request may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// Studies from any of these sources.
    Sources(HashSet<String>),
}

impl Scope {
    /// The scope of `principal` under the configured facilities.
    pub fn of(principal: &Principal, facilities: &[FacilityConfig], admin_role: &str) -> Scope {
        if facilities.is_empty() || principal.has_role(admin_role) {
            return Scope::All;
        }
        let sources = principal
            .facility
            .as_deref()
            .and_then(|f| facilities.iter().find(|c| c.name == f))
            .map(|c| c.upstreams.iter().cloned().collect())
            .unwrap_or_default();
        Scope::Sources(sources)
    }

    /// May a study with these sources be seen?
    pub fn allows<'a>(&self, mut sources: impl Iterator<Item = &'a str>) -> bool {
        match self {
            Scope::All => true,
            Scope::Sources(allowed) => sources.any(|s| allowed.contains(s)),
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
        }];
        assert!(Scope::of(&who(None, &[]), &[], "adm").is_all());
        assert!(Scope::of(&who(None, &["adm"]), &f, "adm").is_all());
        let a = Scope::of(&who(Some("clinic-a"), &[]), &f, "adm");
        assert!(a.allows(["hospital-b", "local"].into_iter()));
        assert!(!a.allows(["hospital-b"].into_iter()));
        let unknown = Scope::of(&who(Some("clinic-z"), &[]), &f, "adm");
        assert!(!unknown.allows(["local"].into_iter()));
        assert!(!Scope::of(&who(None, &[]), &f, "adm").allows(["local"].into_iter()));
    }
}
