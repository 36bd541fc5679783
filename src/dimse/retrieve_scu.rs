//! C-MOVE and C-GET SCU (Study Root). C-MOVE asks the PACS to send to our own C-STORE SCP
//! (the instances arrive on another association, see `scp`); C-GET receives them on this
//! association, each stored durably before its C-STORE-RSP. Both report sub-operation counts
//! as they go and return the final tally.

use std::sync::Arc;
use std::time::Duration;

use dicom_core::VR;
use dicom_dictionary_std::tags;

use super::command::{tag, Command, CommandField, Status, StatusClass};
use super::find_scu::{encode_identifier, Key, QueryLevel};
use super::scu::{
    Proposal, ScuError, Upstream, UpstreamAssociation, Urgency, STUDY_ROOT_GET, STUDY_ROOT_MOVE,
    UNCOMPRESSED,
};
use crate::charset::CharacterSet;
use crate::store::{Store, StoredInstance};

/// What to retrieve: a study, a series, or one instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RetrieveTarget {
    pub study: String,
    pub series: Option<String>,
    pub instance: Option<String>,
}

impl RetrieveTarget {
    pub fn level(&self) -> QueryLevel {
        match (&self.series, &self.instance) {
            (_, Some(_)) => QueryLevel::Image,
            (Some(_), None) => QueryLevel::Series,
            _ => QueryLevel::Study,
        }
    }

    fn keys(&self) -> Vec<Key> {
        let mut keys = vec![Key::new(tags::STUDY_INSTANCE_UID, VR::UI, &self.study)];
        if let Some(s) = &self.series {
            keys.push(Key::new(tags::SERIES_INSTANCE_UID, VR::UI, s));
        }
        if let Some(i) = &self.instance {
            keys.push(Key::new(tags::SOP_INSTANCE_UID, VR::UI, i));
        }
        keys
    }

    /// Does an arriving instance belong to this target?
    pub fn covers(&self, study: &str, series: &str, sop: &str) -> bool {
        self.study == study
            && self.series.as_deref().is_none_or(|s| s == series)
            && self.instance.as_deref().is_none_or(|i| i == sop)
    }
}

/// Sub-operation counts (PS3.4 C.4.2.1.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubOps {
    pub remaining: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// The final answer of a C-MOVE or C-GET.
#[derive(Debug, Clone)]
pub struct RetrieveOutcome {
    pub status: Status,
    pub counts: SubOps,
    pub error_comment: Option<String>,
}

impl RetrieveOutcome {
    pub fn is_complete(&self) -> bool {
        self.status.classify() == StatusClass::Success && self.counts.failed == 0
    }
}

fn sub_ops(c: &Command) -> SubOps {
    SubOps {
        remaining: c
            .get_u16(tag::NUMBER_OF_REMAINING_SUBOPERATIONS)
            .unwrap_or(0),
        completed: c
            .get_u16(tag::NUMBER_OF_COMPLETED_SUBOPERATIONS)
            .unwrap_or(0),
        failed: c.get_u16(tag::NUMBER_OF_FAILED_SUBOPERATIONS).unwrap_or(0),
        warning: c.get_u16(tag::NUMBER_OF_WARNING_SUBOPERATIONS).unwrap_or(0),
    }
}

/// How long a retrieve may go without any response or arriving instance.
pub fn idle_limit(up: &Upstream) -> Duration {
    up.timeout().max(Duration::from_secs(5))
}

/// C-MOVE `target` to our AE. `arrived()` tells how many instances have landed so far (from
/// the C-STORE SCP), so a PACS that only answers at the end is not mistaken for a dead one.
pub async fn c_move(
    up: &Upstream,
    target: &RetrieveTarget,
    urgency: &Urgency,
    arrived: impl Fn() -> usize,
    mut progress: impl FnMut(SubOps),
) -> Result<RetrieveOutcome, ScuError> {
    let mut assoc = up
        .associate_for(&[Proposal::new(STUDY_ROOT_MOVE, &UNCOMPRESSED)], urgency)
        .await?;
    let (pc, ts) = assoc.accepted_context(STUDY_ROOT_MOVE)?;
    let identifier = encode_identifier(
        target.level(),
        &target.keys(),
        &CharacterSet::default(),
        &ts,
    )
    .map_err(|m| up.failed(&m))?;
    let mut rq = Command::new(CommandField::CMoveRq, true);
    rq.set_u16(tag::MESSAGE_ID, up.next_message_id());
    rq.set_uid(tag::AFFECTED_SOP_CLASS_UID, STUDY_ROOT_MOVE);
    rq.set_u16(tag::PRIORITY, urgency.priority().code());
    rq.set_text(tag::MOVE_DESTINATION, &up.move_destination);
    assoc.send_command(pc, &rq).await?;
    assoc.send_data_set(pc, &identifier).await?;
    let outcome = wait_for_final(&mut assoc, up, &arrived, &mut progress).await;
    finish(assoc, outcome).await
}

/// C-GET `target`: the PACS sends the instances on this association; each is stored and
/// announced with `on_stored` before the next is read.
pub async fn c_get(
    up: &Upstream,
    store: &Arc<Store>,
    target: &RetrieveTarget,
    urgency: &Urgency,
    on_stored: impl Fn(&StoredInstance),
    mut progress: impl FnMut(SubOps),
) -> Result<RetrieveOutcome, ScuError> {
    let mut assoc = up.associate_for(&get_proposals(), urgency).await?;
    let (pc, ts) = assoc.accepted_context(STUDY_ROOT_GET)?;
    let identifier = encode_identifier(
        target.level(),
        &target.keys(),
        &CharacterSet::default(),
        &ts,
    )
    .map_err(|m| up.failed(&m))?;
    let mut rq = Command::new(CommandField::CGetRq, true);
    rq.set_u16(tag::MESSAGE_ID, up.next_message_id());
    rq.set_uid(tag::AFFECTED_SOP_CLASS_UID, STUDY_ROOT_GET);
    rq.set_u16(tag::PRIORITY, urgency.priority().code());
    assoc.send_command(pc, &rq).await?;
    assoc.send_data_set(pc, &identifier).await?;
    let calling = up.config.ae_title.clone();
    let outcome = loop {
        let (pc_id, command) = match assoc.next_command().await {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        match command.field() {
            Some(CommandField::CStoreRq) => {
                let stored = assoc
                    .store_and_answer(store, pc_id, &command, &calling, &on_stored)
                    .await;
                match stored {
                    Ok(_) => {}
                    Err(e) => break Err(up.failed(&format!("C-GET sub-operation: {e}"))),
                }
            }
            Some(CommandField::CGetRsp) => {
                if let Some(outcome) = response(&mut assoc, &command, &mut progress).await {
                    break Ok(outcome);
                }
            }
            other => {
                break Err(up.failed(&format!("unexpected {other:?} during C-GET")));
            }
        }
    };
    finish(assoc, outcome).await
}

async fn wait_for_final(
    assoc: &mut UpstreamAssociation,
    up: &Upstream,
    arrived: &impl Fn() -> usize,
    progress: &mut impl FnMut(SubOps),
) -> Result<RetrieveOutcome, ScuError> {
    let idle = idle_limit(up);
    let mut seen = arrived();
    loop {
        let next = tokio::time::timeout(idle, assoc.next_command()).await;
        let (_, command) = match next {
            Err(_) => {
                let now = arrived();
                if now > seen {
                    seen = now; // instances still landing: the PACS is alive
                    continue;
                }
                return Err(ScuError::Timeout {
                    upstream: up.name().into(),
                    timeout: idle,
                });
            }
            Ok(Err(ScuError::Timeout { .. })) if arrived() > seen => {
                seen = arrived();
                continue;
            }
            Ok(r) => r?,
        };
        if let Some(outcome) = response(assoc, &command, progress).await {
            return Ok(outcome);
        }
    }
}

/// A C-MOVE/C-GET response: progress for a pending one, the outcome for the final one.
async fn response(
    assoc: &mut UpstreamAssociation,
    command: &Command,
    progress: &mut impl FnMut(SubOps),
) -> Option<RetrieveOutcome> {
    if command.has_data_set() {
        // a failed-instance list, which the counts already summarise
        let _ = assoc.read_data_set(1 << 20).await;
    }
    let counts = sub_ops(command);
    let status = command.status().unwrap_or(Status::UNABLE_TO_PROCESS);
    if status.classify() == StatusClass::Pending {
        progress(counts);
        return None;
    }
    Some(RetrieveOutcome {
        status,
        counts,
        error_comment: command.error_comment(),
    })
}

async fn finish(
    assoc: UpstreamAssociation,
    outcome: Result<RetrieveOutcome, ScuError>,
) -> Result<RetrieveOutcome, ScuError> {
    match &outcome {
        Ok(_) => assoc.release().await,
        Err(_) => assoc.abort().await,
    }
    outcome
}

/// Storage SOP classes we accept as C-GET sub-operations (SCP role), with contexts for
/// uncompressed and the common compressed syntaxes so the PACS can send what it stores.
const IMAGE_STORAGE: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.1",      // CR
    "1.2.840.10008.5.1.4.1.1.1.1",    // DX presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  // DX processing
    "1.2.840.10008.5.1.4.1.1.1.2",    // MG presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  // MG processing
    "1.2.840.10008.5.1.4.1.1.2",      // CT
    "1.2.840.10008.5.1.4.1.1.2.1",    // Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4",      // MR
    "1.2.840.10008.5.1.4.1.1.4.1",    // Enhanced MR
    "1.2.840.10008.5.1.4.1.1.6.1",    // US
    "1.2.840.10008.5.1.4.1.1.3.1",    // US multi-frame
    "1.2.840.10008.5.1.4.1.1.7",      // SC
    "1.2.840.10008.5.1.4.1.1.7.2",    // MF SC byte
    "1.2.840.10008.5.1.4.1.1.7.3",    // MF SC word
    "1.2.840.10008.5.1.4.1.1.7.4",    // MF SC true colour
    "1.2.840.10008.5.1.4.1.1.12.1",   // XA
    "1.2.840.10008.5.1.4.1.1.12.2",   // RF
    "1.2.840.10008.5.1.4.1.1.20",     // NM
    "1.2.840.10008.5.1.4.1.1.128",    // PET
    "1.2.840.10008.5.1.4.1.1.481.1",  // RT image
    "1.2.840.10008.5.1.4.1.1.77.1.4", // VL photographic
];
const OTHER_STORAGE: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.481.2", // RT dose
    "1.2.840.10008.5.1.4.1.1.481.3", // RT structure set
    "1.2.840.10008.5.1.4.1.1.481.5", // RT plan
    "1.2.840.10008.5.1.4.1.1.88.11", // basic text SR
    "1.2.840.10008.5.1.4.1.1.88.22", // enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33", // comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59", // key object selection
    "1.2.840.10008.5.1.4.1.1.11.1",  // grayscale softcopy presentation state
    "1.2.840.10008.5.1.4.1.1.104.1", // encapsulated PDF
];
const COMPRESSED: &[&[&str]] = &[
    &["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"],
    &["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"],
    &[
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.5",
    ],
];

fn get_proposals() -> Vec<Proposal> {
    let mut out = vec![Proposal::new(STUDY_ROOT_GET, &UNCOMPRESSED)];
    let storage = |sop: &str, ts: &[&str]| Proposal {
        scp_role: true,
        ..Proposal::new(sop, ts)
    };
    for sop in IMAGE_STORAGE {
        out.push(storage(sop, &UNCOMPRESSED));
        for group in COMPRESSED {
            out.push(storage(sop, group));
        }
    }
    for sop in OTHER_STORAGE {
        out.push(storage(sop, &UNCOMPRESSED));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_get_proposals_fit_in_one_association() {
        assert!(get_proposals().len() <= 128);
    }

    #[test]
    fn targets_cover_their_instances() {
        let t = RetrieveTarget {
            study: "1.2".into(),
            series: Some("1.2.3".into()),
            instance: None,
        };
        assert_eq!(t.level(), QueryLevel::Series);
        assert!(t.covers("1.2", "1.2.3", "9"));
        assert!(!t.covers("1.2", "1.2.4", "9"));
    }
}
