//! Attribute registry: which attributes are backed by index columns, which are computed
//! when a row is served, which level (study, series, instance) each attribute belongs to,
//! and how query parameter names (keywords or tags) resolve to attributes.

use std::collections::BTreeSet;

use dicom_core::dictionary::DataDictionary;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};

use super::{QidoLevel, QidoScope};

/// A tag as `0xGGGGEEEE`.
pub(crate) const fn t(tag: Tag) -> u32 {
    ((tag.0 as u32) << 16) | tag.1 as u32
}

/// How an index column stores its attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Single-valued text.
    Text,
    /// Backslash-separated values (matched per value).
    Multi,
    /// Person name, component groups joined by '='.
    Pn,
    /// Nullable integer (IS / US).
    Int,
}

/// An attribute held in an index column.
#[derive(Debug)]
pub(crate) struct Column {
    pub tag: u32,
    pub vr: VR,
    pub level: QidoLevel,
    pub name: &'static str,
    pub kind: Kind,
    /// Returned by default at its level (PS3.18 Tables 10.6.3-3/-4/-5).
    pub default: bool,
}

const fn col(
    tag: Tag,
    vr: VR,
    level: QidoLevel,
    name: &'static str,
    kind: Kind,
    default: bool,
) -> Column {
    Column {
        tag: t(tag),
        vr,
        level,
        name,
        kind,
        default,
    }
}

use Kind::{Int, Multi, Pn, Text};
use QidoLevel::{Instance, Series, Study};

#[rustfmt::skip]
pub(crate) static COLUMNS: &[Column] = &[
    col(tags::STUDY_DATE, VR::DA, Study, "study_date", Text, true),
    col(tags::STUDY_TIME, VR::TM, Study, "study_time", Text, true),
    col(tags::ACCESSION_NUMBER, VR::SH, Study, "accession_number", Text, true),
    col(tags::MODALITIES_IN_STUDY, VR::CS, Study, "modalities_in_study", Multi, true),
    col(tags::REFERRING_PHYSICIAN_NAME, VR::PN, Study, "referring_physician_name", Pn, true),
    col(tags::STUDY_DESCRIPTION, VR::LO, Study, "study_description", Text, true),
    col(tags::PATIENT_NAME, VR::PN, Study, "patient_name", Pn, true),
    col(tags::PATIENT_ID, VR::LO, Study, "patient_id", Text, true),
    col(tags::ISSUER_OF_PATIENT_ID, VR::LO, Study, "issuer_of_patient_id", Text, false),
    col(tags::PATIENT_BIRTH_DATE, VR::DA, Study, "patient_birth_date", Text, true),
    col(tags::PATIENT_SEX, VR::CS, Study, "patient_sex", Text, true),
    col(tags::STUDY_INSTANCE_UID, VR::UI, Study, "study_uid", Text, true),
    col(tags::STUDY_ID, VR::SH, Study, "study_id", Text, true),
    col(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, Study, "num_series", Int, true),
    col(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, Study, "num_instances", Int, true),
    col(tags::MODALITY, VR::CS, Series, "modality", Text, true),
    col(tags::SERIES_DESCRIPTION, VR::LO, Series, "series_description", Text, true),
    col(tags::SERIES_NUMBER, VR::IS, Series, "series_number", Int, true),
    col(tags::SERIES_INSTANCE_UID, VR::UI, Series, "series_uid", Text, true),
    col(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, Series, "num_instances", Int, true),
    col(tags::PERFORMED_PROCEDURE_STEP_START_DATE, VR::DA, Series, "performed_procedure_step_start_date", Text, true),
    col(tags::PERFORMED_PROCEDURE_STEP_START_TIME, VR::TM, Series, "performed_procedure_step_start_time", Text, true),
    col(tags::SERIES_DATE, VR::DA, Series, "series_date", Text, true),
    col(tags::SERIES_TIME, VR::TM, Series, "series_time", Text, true),
    col(tags::BODY_PART_EXAMINED, VR::CS, Series, "body_part_examined", Text, true),
    col(tags::SOP_CLASS_UID, VR::UI, Instance, "sop_class_uid", Text, true),
    col(tags::SOP_INSTANCE_UID, VR::UI, Instance, "sop_instance_uid", Text, true),
    col(tags::INSTANCE_NUMBER, VR::IS, Instance, "instance_number", Int, true),
    col(tags::ROWS, VR::US, Instance, "rows", Int, true),
    col(tags::COLUMNS, VR::US, Instance, "columns", Int, true),
    col(tags::BITS_ALLOCATED, VR::US, Instance, "bits_allocated", Int, true),
    col(tags::NUMBER_OF_FRAMES, VR::IS, Instance, "number_of_frames", Int, true),
    col(tags::AVAILABLE_TRANSFER_SYNTAX_UID, VR::UI, Instance, "transfer_syntax_uid", Text, true),
    col(tags::SAMPLES_PER_PIXEL, VR::US, Instance, "samples_per_pixel", Int, false),
];

pub(crate) const SPECIFIC_CHARACTER_SET: u32 = t(tags::SPECIFIC_CHARACTER_SET);
pub(crate) const INSTANCE_AVAILABILITY: u32 = t(tags::INSTANCE_AVAILABILITY);
pub(crate) const RETRIEVE_URL: u32 = t(tags::RETRIEVE_URL);
/// Attributes computed when a row is served, returned at every level.
pub(crate) const COMPUTED: [u32; 3] = [SPECIFIC_CHARACTER_SET, INSTANCE_AVAILABILITY, RETRIEVE_URL];

/// Whether the store keeps `tag` in a level's `meta_json` (the lists live with the ingest
/// code that fills those columns, so the two cannot drift apart).
fn kept_in(list: &[dicom_core::Tag], tag: u32) -> bool {
    list.iter().any(|known| t(*known) == tag)
}

pub(crate) fn column(tag: u32) -> Option<&'static Column> {
    COLUMNS.iter().find(|c| c.tag == tag)
}

/// The column of `tag` if it can be read in a query at `level` (its table is joined).
pub(crate) fn column_at(tag: u32, level: QidoLevel) -> Option<&'static Column> {
    column(tag).filter(|c| c.level <= level)
}

pub(crate) fn columns_of(level: QidoLevel) -> impl Iterator<Item = &'static Column> {
    COLUMNS.iter().filter(move |c| c.level == level)
}

pub(crate) fn is_computed(tag: u32) -> bool {
    COMPUTED.contains(&tag)
}

/// The level whose rows hold an attribute in this cache: its column's level, the level of
/// the `meta_json` the store keeps it in, or instance level (the instance's `meta_json` is
/// the whole data set).
pub(crate) fn level_of(tag: u32) -> QidoLevel {
    if let Some(c) = column(tag) {
        return c.level;
    }
    if is_computed(tag) || kept_in(crate::store::ingest::STUDY_LEVEL, tag) {
        Study
    } else if kept_in(crate::store::ingest::SERIES_LEVEL, tag) {
        Series
    } else {
        Instance
    }
}

/// SQL table alias of a level.
pub(crate) fn alias(level: QidoLevel) -> &'static str {
    match level {
        Study => "s",
        Series => "se",
        Instance => "i",
    }
}

/// Levels whose attributes are returned: the query level, plus the levels above it that
/// the path does not fix (PS3.18 §10.6.3.3).
pub(crate) fn returned_levels(level: QidoLevel, scope: &QidoScope) -> Vec<QidoLevel> {
    let mut levels = vec![level];
    if level == Instance && scope.series_uid.is_none() {
        levels.push(Series);
    }
    if level >= Series && scope.study_uid.is_none() {
        levels.push(Study);
    }
    levels
}

/// Attributes returned without any includefield.
pub(crate) fn default_tags(level: QidoLevel, levels: &[QidoLevel]) -> BTreeSet<u32> {
    let mut set: BTreeSet<u32> = COMPUTED.into_iter().collect();
    for &l in levels {
        set.extend(columns_of(l).filter(|c| c.default).map(|c| c.tag));
    }
    if level >= Series {
        set.insert(t(tags::STUDY_INSTANCE_UID));
    }
    if level == Instance {
        set.insert(t(tags::SERIES_INSTANCE_UID));
    }
    set
}

/// A resolved DICOM attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    pub tag: u32,
    pub vr: VR,
    pub keyword: &'static str,
}

impl Attr {
    /// "PatientName (0010,0010)", for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:04X},{:04X})",
            self.keyword,
            self.tag >> 16,
            self.tag & 0xFFFF
        )
    }
}

/// Resolves a keyword (`PatientName`) or an 8-hex-digit tag (`00100010`) through the
/// standard dictionary. Private tags, group lengths and unknown names give `None`.
pub(crate) fn resolve(name: &str) -> Option<Attr> {
    let dict = StandardDataDictionary;
    let (tag, entry) = if name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        let tag = u32::from_str_radix(name, 16).ok()?;
        let (group, element) = ((tag >> 16) as u16, (tag & 0xFFFF) as u16);
        if group % 2 == 1 || element == 0 {
            return None;
        }
        (tag, dict.by_tag(Tag(group, element))?)
    } else {
        let entry = dict.by_name(name)?;
        (t(entry.tag.inner()), entry)
    };
    Some(Attr {
        tag,
        vr: entry.vr.relaxed(),
        keyword: entry.alias,
    })
}

/// The dictionary VR of a tag, `UN` when unknown.
pub(crate) fn vr_of(tag: u32) -> VR {
    if let Some(c) = column(tag) {
        return c.vr;
    }
    StandardDataDictionary
        .by_tag(Tag((tag >> 16) as u16, (tag & 0xFFFF) as u16))
        .map_or(VR::UN, |e| e.vr.relaxed())
}
