//! Referrals: the patients a facility with `referred_only = true` may see. A referral names a
//! facility and a patient (Patient ID, optionally with its Issuer and the upstream PACS whose
//! ID it is) and may end at a time. They come from prefetch jobs that name `referred_to` (the
//! referral is what the prefetch is for) and from the admin API (`/admin/referrals`). Stored
//! in the index (table `referral`).

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::store::Index;

/// A stored referral.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Referral {
    pub id: i64,
    pub facility: String,
    pub patient_id: String,
    /// Issuer of Patient ID; empty: any issuer.
    pub issuer: String,
    /// The upstream whose patient ID this is; empty: any source.
    pub upstream: String,
    /// End of access, unix seconds; none: until deleted.
    pub until: Option<i64>,
    /// `job:ID` or `admin`.
    pub source: String,
    pub created_at: i64,
}

/// A referral as requested (admin API body, or derived from a job).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReferral {
    pub facility: String,
    pub patient_id: String,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub upstream: Option<String>,
    /// End of access: `2026-12-31T23:59` (jobs.utc_offset unless it carries an offset).
    #[serde(default)]
    pub until: Option<String>,
}

/// The patient of a study, as the index or a search result knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patient {
    pub id: String,
    pub issuer: String,
}

impl Referral {
    /// Does this referral cover `patient`, for a study from `sources`?
    pub fn covers(&self, patient: &Patient, sources: &[String]) -> bool {
        self.patient_id == patient.id
            && (self.issuer.is_empty() || self.issuer == patient.issuer)
            && (self.upstream.is_empty() || sources.contains(&self.upstream))
    }
}

const COLUMNS: &str = "id, facility, patient_id, issuer, upstream, until, source, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Referral> {
    Ok(Referral {
        id: r.get(0)?,
        facility: r.get(1)?,
        patient_id: r.get(2)?,
        issuer: r.get(3)?,
        upstream: r.get(4)?,
        until: r.get(5)?,
        source: r.get(6)?,
        created_at: r.get(7)?,
    })
}

/// A checked referral about to be stored.
#[derive(Debug, Clone)]
pub struct Draft {
    pub facility: String,
    pub patient: Patient,
    /// "" = any source.
    pub upstream: String,
    pub until: Option<i64>,
    /// `job:ID` or `admin`.
    pub source: String,
}

/// Store a referral; returns it with its id.
pub fn insert(index: &Index, d: Draft, now: i64) -> rusqlite::Result<Referral> {
    index.write(|c| {
        c.execute(
            "INSERT INTO referral (facility, patient_id, issuer, upstream, until, source, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![d.facility, d.patient.id, d.patient.issuer, d.upstream, d.until, d.source, now],
        )?;
        Ok(Referral {
            id: c.last_insert_rowid(),
            facility: d.facility,
            patient_id: d.patient.id,
            issuer: d.patient.issuer,
            upstream: d.upstream,
            until: d.until,
            source: d.source,
            created_at: now,
        })
    })
}

/// Referrals, newest first; only `facility`'s when given; ended ones included.
pub fn list(conn: &Connection, facility: Option<&str>) -> rusqlite::Result<Vec<Referral>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM referral WHERE ?1 IS NULL OR facility = ?1 ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([facility], row)?;
    rows.collect()
}

/// The referrals of `facility` still in force at `now` for these patient IDs.
pub fn active(
    conn: &Connection,
    facility: &str,
    patient_ids: &[&str],
    now: i64,
) -> rusqlite::Result<Vec<Referral>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM referral
         WHERE facility = ?1 AND patient_id = ?2 AND (until IS NULL OR until > ?3)"
    ))?;
    let mut out = Vec::new();
    for id in patient_ids {
        for r in stmt.query_map(params![facility, id, now], row)? {
            out.push(r?);
        }
    }
    Ok(out)
}

/// Delete a referral; false when there was none with that id.
pub fn delete(index: &Index, id: i64) -> rusqlite::Result<bool> {
    index.write(|c| Ok(c.execute("DELETE FROM referral WHERE id = ?1", [id])? > 0))
}

/// The patients of cached studies (studies not in the cache are absent).
pub fn cached_patients(
    conn: &Connection,
    studies: &[String],
) -> rusqlite::Result<Vec<(String, Patient)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT patient_id, issuer_of_patient_id FROM study WHERE study_uid = ?1",
    )?;
    let mut out = Vec::new();
    for s in studies {
        let p = stmt
            .query_row([s], |r| {
                Ok(Patient {
                    id: r.get(0)?,
                    issuer: r.get(1)?,
                })
            })
            .optional()?;
        if let Some(p) = p {
            out.push((s.clone(), p));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_referral_covers_its_patient_only() {
        let r = Referral {
            id: 1,
            facility: "clinic-a".into(),
            patient_id: "P1".into(),
            issuer: String::new(),
            upstream: "hospital-a".into(),
            until: None,
            source: "admin".into(),
            created_at: 0,
        };
        let p1 = Patient {
            id: "P1".into(),
            issuer: "HOSPA".into(),
        };
        let from_a = ["hospital-a".to_string()];
        assert!(r.covers(&p1, &from_a));
        assert!(!r.covers(&p1, &["hospital-b".to_string()]));
        let p2 = Patient {
            id: "P2".into(),
            ..p1.clone()
        };
        assert!(!r.covers(&p2, &from_a));
        let with_issuer = Referral {
            issuer: "OTHER".into(),
            ..r
        };
        assert!(!with_issuer.covers(&p1, &from_a));
    }

    #[test]
    fn referrals_are_stored_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let p = Patient {
            id: "P1".into(),
            issuer: String::new(),
        };
        let draft = |facility: &str, until, source: &str| Draft {
            facility: facility.into(),
            patient: p.clone(),
            upstream: String::new(),
            until,
            source: source.into(),
        };
        let a = insert(&index, draft("clinic-a", Some(100), "admin"), 10).unwrap();
        insert(&index, draft("clinic-b", None, "job:3"), 10).unwrap();
        let now_50 = index.read(|c| active(c, "clinic-a", &["P1"], 50)).unwrap();
        assert_eq!(now_50, vec![a.clone()]);
        assert!(index
            .read(|c| active(c, "clinic-a", &["P1"], 100))
            .unwrap()
            .is_empty());
        assert_eq!(index.read(|c| list(c, None)).unwrap().len(), 2);
        assert!(delete(&index, a.id).unwrap());
        assert!(!delete(&index, a.id).unwrap());
        assert_eq!(index.read(|c| list(c, Some("clinic-a"))).unwrap(), vec![]);
    }
}
