//! The DIMSE side: our own small typed DIMSE layer over dicom-ul (command sets and statuses,
//! a message reader/writer that streams data sets), and the SCP that accepts associations
//! from PACS and modalities (C-ECHO, C-STORE into the cache).

pub mod access;
pub mod audit;
pub mod command;
pub mod connection;
pub mod find_scu;
pub mod retrieve_scu;
pub mod scp;
pub mod scu;
pub mod store_scp;
pub mod tls;

pub use command::{Command, CommandField, Status, StatusClass};
pub use connection::{DimseAssociation, DimseConnection, DimseError, Event};
