//! Audit records of the DIMSE side (PS3.15 A.5 vocabulary, same trail as DICOMweb): a
//! Security Alert (DCM 110113, type 110126 Node Authentication) for each association refused
//! by `dimse.allowed_callers`, and one Import (DCM 110107) per association that received
//! instances by C-STORE (or, for a C-GET we made, one per retrieve), naming every study it
//! brought. The user is the calling AE title,
//! the network access point the peer's IP address.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::access::Refusal;
use crate::audit::{Event, Record};

/// The Security Alert for a refused caller; `None` for refusals that are not about who calls
/// (a wrong Called AE title is a configuration mistake, not an intrusion).
pub fn refused(refusal: &Refusal, peer: IpAddr) -> Option<Record> {
    let calling_ae = match refusal {
        Refusal::UnknownCaller { calling_ae } | Refusal::WrongAddress { calling_ae } => calling_ae,
        Refusal::WrongCalledAe { .. } => return None,
    };
    let record = Record::new(
        Event::SecurityAlert,
        4,
        format!("association rejected: {refusal}"),
        calling_ae,
        &peer.to_string(),
    );
    Some(
        record
            .event_type("110126", "Node Authentication")
            .request("A-ASSOCIATE-RQ"),
    )
}

/// What one association imported, summed up when it ends.
#[derive(Debug, Default)]
pub struct ImportTally {
    studies: BTreeSet<String>,
    stored: u64,
    refused: u64,
}

impl ImportTally {
    pub fn stored(&mut self, study_uid: &str) {
        self.stored += 1;
        self.studies.insert(study_uid.to_string());
    }

    pub fn refused(&mut self) {
        self.failed(1);
    }

    /// `n` instances that did not arrive (refused, or failed sub-operations).
    pub fn failed(&mut self, n: u64) {
        self.refused += n;
    }

    /// The Import record (outcome 4 when some instances were refused); `None` when the
    /// association sent no C-STORE.
    pub fn record(&self, calling_ae: &str, peer: IpAddr) -> Option<Record> {
        self.record_via(calling_ae, &peer.to_string(), "C-STORE")
    }

    /// As `record`, for instances that came in by `service` (e.g. "C-GET" from an upstream
    /// at `from`, host:port).
    pub fn record_via(&self, calling_ae: &str, from: &str, service: &str) -> Option<Record> {
        if self.stored == 0 && self.refused == 0 {
            return None;
        }
        let outcome = if self.refused == 0 { 0 } else { 4 };
        let text = format!(
            "{} instances stored, {} refused, {} studies",
            self.stored,
            self.refused,
            self.studies.len()
        );
        let record = Record::new(Event::Import, outcome, text, calling_ae, from);
        Some(
            self.studies
                .iter()
                .fold(record.request(service), |r, uid| r.study(uid)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_one_record_per_association() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let mut t = ImportTally::default();
        assert!(t.record("PACS", peer).is_none());
        t.stored("1.2.3");
        t.stored("1.2.3");
        t.stored("1.2.4");
        let r = t.record("PACS", peer).unwrap();
        assert_eq!(r.event_id.code, "110107");
        assert_eq!(r.event_outcome_indicator, 0);
        assert_eq!(r.participant_object.len(), 2);
        t.refused();
        assert_eq!(t.record("PACS", peer).unwrap().event_outcome_indicator, 4);
    }

    #[test]
    fn security_alert_for_unknown_callers_only() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let r = refused(
            &Refusal::UnknownCaller {
                calling_ae: "EVIL".into(),
            },
            peer,
        )
        .unwrap();
        assert_eq!(r.event_id.code, "110113");
        assert_eq!(r.active_participant.user_id, "EVIL");
        let wrong_called = Refusal::WrongCalledAe {
            called_ae: "X".into(),
        };
        assert!(refused(&wrong_called, peer).is_none());
    }
}
