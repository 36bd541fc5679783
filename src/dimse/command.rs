//! DIMSE command sets (PS3.7 §9, §E): named command fields, statuses and the group 0000
//! elements, encoded and decoded as Implicit VR Little Endian. No hex literals in logic
//! outside this file.

use std::collections::BTreeMap;
use std::fmt;

/// Command Field (0000,0100) values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandField {
    CStoreRq,
    CStoreRsp,
    CGetRq,
    CGetRsp,
    CFindRq,
    CFindRsp,
    CMoveRq,
    CMoveRsp,
    CEchoRq,
    CEchoRsp,
    CCancelRq,
}

impl CommandField {
    pub fn code(self) -> u16 {
        match self {
            CommandField::CStoreRq => 0x0001,
            CommandField::CStoreRsp => 0x8001,
            CommandField::CGetRq => 0x0010,
            CommandField::CGetRsp => 0x8010,
            CommandField::CFindRq => 0x0020,
            CommandField::CFindRsp => 0x8020,
            CommandField::CMoveRq => 0x0021,
            CommandField::CMoveRsp => 0x8021,
            CommandField::CEchoRq => 0x0030,
            CommandField::CEchoRsp => 0x8030,
            CommandField::CCancelRq => 0x0FFF,
        }
    }

    pub fn from_code(code: u16) -> Option<Self> {
        use CommandField::*;
        [
            CStoreRq, CStoreRsp, CGetRq, CGetRsp, CFindRq, CFindRsp, CMoveRq, CMoveRsp, CEchoRq,
            CEchoRsp, CCancelRq,
        ]
        .into_iter()
        .find(|f| f.code() == code)
    }

    /// The response field that answers this request.
    pub fn response(self) -> Option<Self> {
        use CommandField::*;
        match self {
            CStoreRq => Some(CStoreRsp),
            CGetRq => Some(CGetRsp),
            CFindRq => Some(CFindRsp),
            CMoveRq => Some(CMoveRsp),
            CEchoRq => Some(CEchoRsp),
            _ => None,
        }
    }
}

/// Element numbers of group 0000 (PS3.7 Annex E).
pub mod tag {
    pub const GROUP_LENGTH: u16 = 0x0000;
    pub const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
    pub const REQUESTED_SOP_CLASS_UID: u16 = 0x0003;
    pub const COMMAND_FIELD: u16 = 0x0100;
    pub const MESSAGE_ID: u16 = 0x0110;
    pub const MESSAGE_ID_BEING_RESPONDED_TO: u16 = 0x0120;
    pub const MOVE_DESTINATION: u16 = 0x0600;
    pub const PRIORITY: u16 = 0x0700;
    pub const COMMAND_DATA_SET_TYPE: u16 = 0x0800;
    pub const STATUS: u16 = 0x0900;
    pub const OFFENDING_ELEMENT: u16 = 0x0901;
    pub const ERROR_COMMENT: u16 = 0x0902;
    pub const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;
    pub const REQUESTED_SOP_INSTANCE_UID: u16 = 0x1001;
    pub const NUMBER_OF_REMAINING_SUBOPERATIONS: u16 = 0x1020;
    pub const NUMBER_OF_COMPLETED_SUBOPERATIONS: u16 = 0x1021;
    pub const NUMBER_OF_FAILED_SUBOPERATIONS: u16 = 0x1022;
    pub const NUMBER_OF_WARNING_SUBOPERATIONS: u16 = 0x1023;
    pub const MOVE_ORIGINATOR_AE_TITLE: u16 = 0x1030;
    pub const MOVE_ORIGINATOR_MESSAGE_ID: u16 = 0x1031;
}

/// Command Data Set Type (0000,0800) value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;
/// A value meaning "a data set follows" (any value other than 0x0101).
pub const DATA_SET_PRESENT: u16 = 0x0000;

/// Priority (0000,0700).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Low,
    Medium,
    High,
}

impl Priority {
    pub fn code(self) -> u16 {
        match self {
            Priority::Medium => 0x0000,
            Priority::High => 0x0001,
            Priority::Low => 0x0002,
        }
    }
}

/// The class of a DIMSE status (PS3.7 Annex C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Pending,
    Cancel,
    Warning,
    Failure,
}

/// A DIMSE status code (0000,0900).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u16);

impl Status {
    pub const SUCCESS: Status = Status(0x0000);
    pub const PENDING: Status = Status(0xFF00);
    pub const PENDING_WARNING: Status = Status(0xFF01);
    pub const CANCEL: Status = Status(0xFE00);
    /// Warning: sub-operations complete, one or more failures or warnings.
    pub const SUBOPERATIONS_WARNING: Status = Status(0xB000);
    /// Warning: coercion of data elements.
    pub const COERCION_OF_DATA_ELEMENTS: Status = Status(0xB000);
    /// Refused: out of resources (C-STORE: A7xx).
    pub const OUT_OF_RESOURCES: Status = Status(0xA700);
    /// Refused: out of resources, unable to calculate number of matches (C-MOVE/C-GET).
    pub const OUT_OF_RESOURCES_MATCHES: Status = Status(0xA701);
    /// Refused: out of resources, unable to perform sub-operations (C-MOVE/C-GET).
    pub const OUT_OF_RESOURCES_SUBOPERATIONS: Status = Status(0xA702);
    /// Refused: move destination unknown.
    pub const MOVE_DESTINATION_UNKNOWN: Status = Status(0xA801);
    /// Error: data set does not match SOP class (C-STORE: A9xx).
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: Status = Status(0xA900);
    /// Failed: identifier does not match SOP class (C-FIND/C-MOVE/C-GET).
    pub const IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS: Status = Status(0xA900);
    /// Error: cannot understand (C-STORE: Cxxx).
    pub const CANNOT_UNDERSTAND: Status = Status(0xC000);
    /// Failed: unable to process.
    pub const UNABLE_TO_PROCESS: Status = Status(0xC001);
    /// Refused: SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: Status = Status(0x0122);
    /// Failure: duplicate invocation / processing failure.
    pub const PROCESSING_FAILURE: Status = Status(0x0110);
    /// Failure: unrecognized operation.
    pub const UNRECOGNIZED_OPERATION: Status = Status(0x0211);

    pub fn classify(self) -> StatusClass {
        match self.0 {
            0x0000 => StatusClass::Success,
            0xFF00 | 0xFF01 => StatusClass::Pending,
            0xFE00 => StatusClass::Cancel,
            0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => StatusClass::Warning,
            _ => StatusClass::Failure,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}H ({:?})", self.0, self.classify())
    }
}

/// Errors decoding a command set from the wire.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command set truncated at byte {0}")]
    Truncated(usize),
    #[error("command element (0000,{0:04X}) is outside group 0000")]
    WrongGroup(u16),
    #[error("command set has no Command Field (0000,0100)")]
    MissingCommandField,
    #[error("unknown Command Field {0:04X}H")]
    UnknownCommandField(u16),
}

/// A decoded command set: group 0000 elements by element number, raw values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Command {
    elements: BTreeMap<u16, Vec<u8>>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Command");
        d.field("field", &self.field());
        if let Some(id) = self.message_id() {
            d.field("message_id", &id);
        }
        if let Some(s) = self.status() {
            d.field("status", &s);
        }
        d.finish()
    }
}

impl Command {
    /// A new command set with its Command Field, Message ID (for requests) and data set type.
    pub fn new(field: CommandField, has_data_set: bool) -> Self {
        let mut c = Command::default();
        c.set_u16(tag::COMMAND_FIELD, field.code());
        c.set_u16(
            tag::COMMAND_DATA_SET_TYPE,
            if has_data_set {
                DATA_SET_PRESENT
            } else {
                NO_DATA_SET
            },
        );
        c
    }

    /// The response to `request` with the given status (no data set).
    pub fn response_to(request: &Command, status: Status) -> Option<Self> {
        let field = request.field()?.response()?;
        let mut rsp = Command::new(field, false);
        if let Some(id) = request.message_id() {
            rsp.set_u16(tag::MESSAGE_ID_BEING_RESPONDED_TO, id);
        }
        if let Some(uid) = request.affected_sop_class_uid() {
            rsp.set_uid(tag::AFFECTED_SOP_CLASS_UID, &uid);
        }
        if let Some(uid) = request.affected_sop_instance_uid() {
            rsp.set_uid(tag::AFFECTED_SOP_INSTANCE_UID, &uid);
        }
        rsp.set_u16(tag::STATUS, status.0);
        Some(rsp)
    }

    pub fn field(&self) -> Option<CommandField> {
        self.get_u16(tag::COMMAND_FIELD)
            .and_then(CommandField::from_code)
    }
    pub fn message_id(&self) -> Option<u16> {
        self.get_u16(tag::MESSAGE_ID)
    }
    pub fn status(&self) -> Option<Status> {
        self.get_u16(tag::STATUS).map(Status)
    }
    pub fn has_data_set(&self) -> bool {
        self.get_u16(tag::COMMAND_DATA_SET_TYPE)
            .is_some_and(|t| t != NO_DATA_SET)
    }
    pub fn affected_sop_class_uid(&self) -> Option<String> {
        self.get_str(tag::AFFECTED_SOP_CLASS_UID)
    }
    pub fn affected_sop_instance_uid(&self) -> Option<String> {
        self.get_str(tag::AFFECTED_SOP_INSTANCE_UID)
    }
    pub fn error_comment(&self) -> Option<String> {
        self.get_str(tag::ERROR_COMMENT)
    }

    pub fn get_u16(&self, element: u16) -> Option<u16> {
        let v = self.elements.get(&element)?;
        Some(u16::from_le_bytes([*v.first()?, *v.get(1)?]))
    }

    /// A text value with DICOM padding (space, NUL) trimmed.
    pub fn get_str(&self, element: u16) -> Option<String> {
        let v = self.elements.get(&element)?;
        let s = String::from_utf8_lossy(v);
        Some(s.trim_matches(['\0', ' ']).to_string())
    }

    pub fn set_u16(&mut self, element: u16, value: u16) {
        self.elements.insert(element, value.to_le_bytes().to_vec());
    }

    /// UI values are padded with NUL to even length.
    pub fn set_uid(&mut self, element: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        self.elements.insert(element, v);
    }

    /// AE, LO and similar text values are padded with a space to even length.
    pub fn set_text(&mut self, element: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(b' ');
        }
        self.elements.insert(element, v);
    }

    /// Encode as Implicit VR Little Endian with the Command Group Length first.
    pub fn encode(&self) -> Vec<u8> {
        let body_len: usize = self
            .elements
            .iter()
            .filter(|(e, _)| **e != tag::GROUP_LENGTH)
            .map(|(_, v)| 8 + v.len())
            .sum();
        let mut out = Vec::with_capacity(12 + body_len);
        write_element(
            &mut out,
            tag::GROUP_LENGTH,
            &(body_len as u32).to_le_bytes(),
        );
        for (element, value) in &self.elements {
            if *element != tag::GROUP_LENGTH {
                write_element(&mut out, *element, value);
            }
        }
        out
    }

    /// Decode an Implicit VR Little Endian command set.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let mut elements = BTreeMap::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let header = bytes
                .get(pos..pos + 8)
                .ok_or(CommandError::Truncated(pos))?;
            let group = u16::from_le_bytes([header[0], header[1]]);
            let element = u16::from_le_bytes([header[2], header[3]]);
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if group != 0x0000 {
                return Err(CommandError::WrongGroup(group));
            }
            let start = pos + 8;
            let value = bytes
                .get(start..start.saturating_add(len))
                .ok_or(CommandError::Truncated(start))?;
            elements.insert(element, value.to_vec());
            pos = start + len;
        }
        let command = Command { elements };
        match command.get_u16(tag::COMMAND_FIELD) {
            None => Err(CommandError::MissingCommandField),
            Some(code) if CommandField::from_code(code).is_none() => {
                Err(CommandError::UnknownCommandField(code))
            }
            Some(_) => Ok(command),
        }
    }
}

fn write_element(out: &mut Vec<u8>, element: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_group_length() {
        let mut c = Command::new(CommandField::CEchoRq, false);
        c.set_u16(tag::MESSAGE_ID, 7);
        c.set_uid(tag::AFFECTED_SOP_CLASS_UID, "1.2.840.10008.1.1");
        let bytes = c.encode();
        // group length value = bytes after the group length element
        let gl = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(gl, bytes.len() - 12);
        let d = Command::decode(&bytes).unwrap();
        assert_eq!(d.field(), Some(CommandField::CEchoRq));
        assert_eq!(d.message_id(), Some(7));
        assert_eq!(
            d.affected_sop_class_uid().as_deref(),
            Some("1.2.840.10008.1.1")
        );
        assert!(!d.has_data_set());
    }

    #[test]
    fn response_mirrors_request() {
        let mut rq = Command::new(CommandField::CStoreRq, true);
        rq.set_u16(tag::MESSAGE_ID, 3);
        rq.set_uid(tag::AFFECTED_SOP_INSTANCE_UID, "1.2.3");
        let rsp = Command::response_to(&rq, Status::SUCCESS).unwrap();
        assert_eq!(rsp.field(), Some(CommandField::CStoreRsp));
        assert_eq!(rsp.get_u16(tag::MESSAGE_ID_BEING_RESPONDED_TO), Some(3));
        assert_eq!(rsp.affected_sop_instance_uid().as_deref(), Some("1.2.3"));
    }

    #[test]
    fn malformed_command_sets_are_errors() {
        assert_eq!(Command::decode(&[0, 0, 0]), Err(CommandError::Truncated(0)));
        let mut bad = Command::new(CommandField::CEchoRq, false).encode();
        bad.truncate(bad.len() - 1);
        assert!(matches!(
            Command::decode(&bad),
            Err(CommandError::Truncated(_))
        ));
        let other_group = [8u8, 0, 0x18, 0, 0, 0, 0, 0];
        assert_eq!(
            Command::decode(&other_group),
            Err(CommandError::WrongGroup(8))
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(Status::SUCCESS.classify(), StatusClass::Success);
        assert_eq!(Status(0xFF01).classify(), StatusClass::Pending);
        assert_eq!(Status(0xB007).classify(), StatusClass::Warning);
        assert_eq!(Status::OUT_OF_RESOURCES.classify(), StatusClass::Failure);
    }
}
