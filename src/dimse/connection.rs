//! DIMSE messages over an established association (either side): assembles command sets from
//! P-DATA fragments, hands data-set fragments to the caller one PDU at a time (so data sets
//! stream and are never buffered whole), and writes commands and data sets split to the
//! peer's maximum PDU length.

use std::collections::VecDeque;

use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::association::AsyncAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;
use tokio::io::{AsyncRead, AsyncWrite};

use super::command::{Command, CommandError};

/// Errors on a DIMSE connection.
#[derive(Debug, thiserror::Error)]
pub enum DimseError {
    #[error("association: {0}")]
    Ul(#[from] dicom_ul::association::Error),
    #[error("malformed command set: {0}")]
    Command(#[from] CommandError),
    #[error("peer aborted the association")]
    Aborted,
    #[error("peer released the association in the middle of a message")]
    ReleasedMidMessage,
    #[error("unexpected PDU: {0}")]
    UnexpectedPdu(String),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// What the peer sent next, at a message boundary.
#[derive(Debug)]
pub enum Event {
    /// A complete command set on presentation context `pc_id`.
    Command { pc_id: u8, command: Command },
    /// The peer asked to release; we answered and the association is over.
    Released,
}

/// One data-set fragment as it arrived.
pub struct Fragment {
    pub data: Vec<u8>,
    pub is_last: bool,
}

/// An established association of either side over any stream (plain TCP or TLS): names the
/// stream type so the DIMSE layer can be generic over it.
pub trait DimseAssociation: AsyncAssociation<Self::Stream> + Send {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> DimseAssociation for AsyncServerAssociation<S> {
    type Stream = S;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> DimseAssociation for AsyncClientAssociation<S> {
    type Stream = S;
}

/// A DIMSE message reader/writer over an association.
pub struct DimseConnection<A> {
    assoc: A,
    pending: VecDeque<PDataValue>,
}

impl<A: DimseAssociation> DimseConnection<A> {
    pub fn new(assoc: A) -> Self {
        Self {
            assoc,
            pending: VecDeque::new(),
        }
    }

    pub fn association(&self) -> &A {
        &self.assoc
    }

    /// The next P-DATA value, reading PDUs as needed. `None` when the peer released.
    async fn next_value(&mut self) -> Result<Option<PDataValue>, DimseError> {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Some(v));
            }
            match AsyncAssociation::receive(&mut self.assoc).await? {
                Pdu::PData { data } => self.pending.extend(data),
                Pdu::ReleaseRQ => {
                    AsyncAssociation::send(&mut self.assoc, &Pdu::ReleaseRP).await?;
                    return Ok(None);
                }
                Pdu::AbortRQ { .. } => return Err(DimseError::Aborted),
                other => return Err(DimseError::UnexpectedPdu(format!("{other:?}"))),
            }
        }
    }

    /// Wait for the next command set (or the peer's release).
    pub async fn next_event(&mut self) -> Result<Event, DimseError> {
        let mut bytes = Vec::new();
        loop {
            let Some(v) = self.next_value().await? else {
                return if bytes.is_empty() {
                    Ok(Event::Released)
                } else {
                    Err(DimseError::ReleasedMidMessage)
                };
            };
            if v.value_type != PDataValueType::Command {
                return Err(DimseError::Protocol(
                    "data set fragment received where a command was expected".into(),
                ));
            }
            bytes.extend_from_slice(&v.data);
            if v.is_last {
                let command = Command::decode(&bytes)?;
                return Ok(Event::Command {
                    pc_id: v.presentation_context_id,
                    command,
                });
            }
        }
    }

    /// The next data-set fragment of the current message.
    pub async fn next_fragment(&mut self) -> Result<Fragment, DimseError> {
        let v = self
            .next_value()
            .await?
            .ok_or(DimseError::ReleasedMidMessage)?;
        if v.value_type != PDataValueType::Data {
            return Err(DimseError::Protocol(
                "command fragment received inside a data set".into(),
            ));
        }
        Ok(Fragment {
            data: v.data,
            is_last: v.is_last,
        })
    }

    /// Read and discard the rest of a data set (after we decided to refuse it).
    pub async fn drain_data_set(&mut self) -> Result<(), DimseError> {
        while !self.next_fragment().await?.is_last {}
        Ok(())
    }

    /// Read a whole (small) data set, e.g. a C-FIND identifier, refusing more than `limit` bytes.
    pub async fn read_small_data_set(&mut self, limit: usize) -> Result<Vec<u8>, DimseError> {
        let mut out = Vec::new();
        loop {
            let f = self.next_fragment().await?;
            out.extend_from_slice(&f.data);
            if out.len() > limit {
                return Err(DimseError::Protocol(format!(
                    "data set larger than {limit} bytes"
                )));
            }
            if f.is_last {
                return Ok(out);
            }
        }
    }

    /// Largest data we may put in one PDV so the PDU fits the peer's maximum
    /// (PDU header 6 + PDV length 4 + context id 1 + control 1).
    fn max_fragment(&self) -> usize {
        let peer = self.assoc.peer_max_pdu_length() as usize;
        peer.saturating_sub(12).max(1024)
    }

    /// Send a command set.
    pub async fn send_command(&mut self, pc_id: u8, command: &Command) -> Result<(), DimseError> {
        self.send_fragments(pc_id, PDataValueType::Command, &command.encode(), true)
            .await
    }

    /// Send a whole data set held in memory (identifiers, small objects).
    pub async fn send_data_set(&mut self, pc_id: u8, data: &[u8]) -> Result<(), DimseError> {
        self.send_fragments(pc_id, PDataValueType::Data, data, true)
            .await
    }

    /// Send part of a data set; `is_last` marks its final fragment.
    pub async fn send_data_chunk(
        &mut self,
        pc_id: u8,
        data: &[u8],
        is_last: bool,
    ) -> Result<(), DimseError> {
        self.send_fragments(pc_id, PDataValueType::Data, data, is_last)
            .await
    }

    async fn send_fragments(
        &mut self,
        pc_id: u8,
        value_type: PDataValueType,
        data: &[u8],
        is_last: bool,
    ) -> Result<(), DimseError> {
        let max = self.max_fragment();
        let mut chunks = data.chunks(max).peekable();
        if chunks.peek().is_none() {
            return self.send_pdv(pc_id, value_type, Vec::new(), is_last).await;
        }
        while let Some(chunk) = chunks.next() {
            let last = is_last && chunks.peek().is_none();
            self.send_pdv(pc_id, value_type.clone(), chunk.to_vec(), last)
                .await?;
        }
        Ok(())
    }

    async fn send_pdv(
        &mut self,
        pc_id: u8,
        value_type: PDataValueType,
        data: Vec<u8>,
        is_last: bool,
    ) -> Result<(), DimseError> {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type,
                is_last,
                data,
            }],
        };
        AsyncAssociation::send(&mut self.assoc, &pdu).await?;
        Ok(())
    }

    /// Release the association (we initiate).
    pub async fn release(self) -> Result<(), DimseError> {
        self.assoc.release().await?;
        Ok(())
    }

    /// Abort the association.
    pub async fn abort(self) -> Result<(), DimseError> {
        self.assoc.abort().await?;
        Ok(())
    }
}
