//! Outbound associations to hospital PACS: at most `max_associations` at once per upstream
//! (a clinical system is never flooded), connect and DIMSE timeouts on every one, TCP_NODELAY,
//! and an explicit release at the end. Viewers go first: a background (prefetch) association
//! takes a slot only while no interactive request waits for one, and becomes interactive the
//! moment a viewer joins the retrieve it serves ([`Urgency`]). An upstream with `tls = true` is
//! reached over DICOM TLS ([`UpstreamLink`]) with the same slots and timeouts, the handshake
//! included. The DIMSE operations on top live in `find_scu`, `retrieve_scu` and here (C-ECHO).

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_ul::association::client::{AsyncClientAssociation, AsyncTlsStream};
use dicom_ul::pdu::{PresentationContextNegotiated, PresentationContextResultReason};
use dicom_ul::ClientAssociationOptions;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::command::{tag, Command, CommandField, Status};
use super::connection::{DimseConnection, DimseError, Event};
use super::tls::{self, UpstreamTlsError};
use crate::config::UpstreamConfig;
use crate::store::{Store, StoredInstance};

pub const VERIFICATION: &str = "1.2.840.10008.1.1";
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
pub const UNCOMPRESSED: [&str; 2] = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];

/// Errors talking to an upstream PACS; all of them are the PACS's side or the network.
#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    #[error("{upstream}: cannot associate with {address}: {source}")]
    Associate {
        upstream: String,
        address: String,
        source: Box<dicom_ul::association::Error>,
    },
    #[error("{upstream}: TLS handshake with {address} failed: {reason}")]
    Tls {
        upstream: String,
        address: String,
        reason: String,
    },
    #[error("{upstream}: no answer within {0:?}", timeout)]
    Timeout { upstream: String, timeout: Duration },
    #[error("{upstream}: {what} was not accepted by the PACS")]
    NotAccepted { upstream: String, what: String },
    #[error("{upstream}: {source}")]
    Dimse {
        upstream: String,
        source: Box<DimseError>,
    },
    #[error("{upstream}: {0}", message)]
    Failed { upstream: String, message: String },
}

impl ScuError {
    /// A transient failure worth a retry (network, timeouts, busy PACS); a failed TLS
    /// handshake (certificates, names) is not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ScuError::Associate { .. } | ScuError::Timeout { .. } | ScuError::Dimse { .. }
        )
    }
}

/// Who an association is for: a viewer waiting now, or background work (prefetch) that
/// yields to viewers. The flag turns a background request interactive (a viewer joined).
#[derive(Debug, Clone)]
pub enum Urgency {
    Interactive,
    Background(Arc<AtomicBool>),
}

impl Urgency {
    pub fn background() -> Self {
        Urgency::Background(Arc::new(AtomicBool::new(false)))
    }

    pub fn is_interactive(&self) -> bool {
        match self {
            Urgency::Interactive => true,
            Urgency::Background(promoted) => promoted.load(Ordering::Relaxed),
        }
    }

    /// A viewer now waits for this work.
    pub fn promote(&self) {
        if let Urgency::Background(p) = self {
            p.store(true, Ordering::Relaxed);
        }
    }

    /// The DIMSE Priority to send with a C-MOVE or C-GET.
    pub fn priority(&self) -> super::command::Priority {
        if self.is_interactive() {
            super::command::Priority::Medium
        } else {
            super::command::Priority::Low
        }
    }
}

/// One hospital PACS as a peer: its configuration and its association budget.
pub struct Upstream {
    pub config: UpstreamConfig,
    /// Our AE title (calling AE) and the AE the PACS should C-MOVE to.
    pub calling_ae: String,
    pub move_destination: String,
    slots: Arc<Semaphore>,
    /// Interactive requests waiting for a slot; background work waits while any do.
    interactive_waiting: AtomicUsize,
    slot_freed: Notify,
    message_ids: AtomicU16,
    /// Set for `tls = true`: the client configuration and the name to verify.
    tls: Option<UpstreamTls>,
}

struct UpstreamTls {
    config: Arc<rustls::ClientConfig>,
    server_name: String,
}

/// The DIMSE connection of an upstream association, over plain TCP or DICOM TLS (boxed: the
/// association's buffers are a few hundred bytes, the TLS state more).
pub enum UpstreamLink {
    Plain(Box<DimseConnection<AsyncClientAssociation<TcpStream>>>),
    Tls(Box<DimseConnection<AsyncClientAssociation<AsyncTlsStream>>>),
}

/// `$body` with `$c` bound to the DIMSE connection, whichever the transport.
macro_rules! on_link {
    ($link:expr, $c:ident => $body:expr) => {
        match $link {
            UpstreamLink::Plain($c) => $body,
            UpstreamLink::Tls($c) => $body,
        }
    };
}

/// An open association with an upstream, holding one of its slots.
pub struct UpstreamAssociation {
    link: UpstreamLink,
    pub upstream: String,
    timeout: Duration,
    _slot: OwnedSemaphorePermit,
}

/// A presentation context to propose: abstract syntax, transfer syntaxes, and whether we
/// take the SCP role (C-GET sub-operations).
pub struct Proposal {
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<String>,
    pub scp_role: bool,
}

impl Proposal {
    pub fn new(abstract_syntax: &str, ts: &[&str]) -> Self {
        Proposal {
            abstract_syntax: abstract_syntax.into(),
            transfer_syntaxes: ts.iter().map(|s| s.to_string()).collect(),
            scp_role: false,
        }
    }
}

impl Upstream {
    /// An upstream from its configuration; with `tls = true` its CA, certificate and key
    /// files are read now, so a missing or unusable file stops the start-up.
    pub fn new(
        config: UpstreamConfig,
        calling_ae: &str,
        move_destination: &str,
    ) -> Result<Self, UpstreamTlsError> {
        let tls = match config.tls {
            false => None,
            true => Some(UpstreamTls {
                config: tls::client_config(&config)?,
                server_name: config.tls_server_name().to_string(),
            }),
        };
        Ok(Upstream {
            slots: Arc::new(Semaphore::new(config.max_associations)),
            interactive_waiting: AtomicUsize::new(0),
            slot_freed: Notify::new(),
            config,
            calling_ae: calling_ae.into(),
            move_destination: move_destination.into(),
            message_ids: AtomicU16::new(1),
            tls,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// A message ID unique among this upstream's running operations.
    pub fn next_message_id(&self) -> u16 {
        let id = self.message_ids.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            self.message_ids.fetch_add(1, Ordering::Relaxed)
        } else {
            id
        }
    }

    /// Wait for a free slot (bounded by the timeout), then associate.
    pub async fn associate(&self, proposals: &[Proposal]) -> Result<UpstreamAssociation, ScuError> {
        self.associate_for(proposals, &Urgency::Interactive).await
    }

    /// Wait for a slot: an interactive request at most the timeout, background work for as
    /// long as interactive requests are waiting (it checks again every 200 ms).
    async fn slot(&self, urgency: &Urgency) -> Result<OwnedSemaphorePermit, ScuError> {
        while !urgency.is_interactive() {
            if self.interactive_waiting.load(Ordering::Acquire) == 0 {
                if let Ok(p) = Arc::clone(&self.slots).try_acquire_owned() {
                    return Ok(p);
                }
            }
            tokio::select! {
                _ = self.slot_freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        self.interactive_waiting.fetch_add(1, Ordering::AcqRel);
        let slot =
            tokio::time::timeout(self.timeout(), Arc::clone(&self.slots).acquire_owned()).await;
        self.interactive_waiting.fetch_sub(1, Ordering::AcqRel);
        self.slot_freed.notify_waiters();
        slot.map_err(|_| self.timeout_error())?
            .map_err(|_| self.failed("association pool closed"))
    }

    /// [`Upstream::associate`] on behalf of `urgency`.
    pub async fn associate_for(
        &self,
        proposals: &[Proposal],
        urgency: &Urgency,
    ) -> Result<UpstreamAssociation, ScuError> {
        let timeout = self.timeout();
        let slot = self.slot(urgency).await?;
        // the timeout bounds the whole negotiation, TCP connect and TLS handshake included
        let link = tokio::time::timeout(timeout, self.establish(self.options(proposals)))
            .await
            .map_err(|_| self.timeout_error())??;
        Ok(UpstreamAssociation {
            link,
            upstream: self.name().into(),
            timeout,
            _slot: slot,
        })
    }

    /// The A-ASSOCIATE-RQ to send: our AE titles, the proposals and the timeouts.
    fn options(&self, proposals: &[Proposal]) -> ClientAssociationOptions<'static> {
        let timeout = self.timeout();
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(self.calling_ae.clone())
            .called_ae_title(self.config.ae_title.clone())
            .connection_timeout(timeout)
            .read_timeout(timeout)
            .write_timeout(timeout);
        for p in proposals {
            options = options
                .with_presentation_context(p.abstract_syntax.clone(), p.transfer_syntaxes.clone());
            if p.scp_role {
                options = options.with_role_selection(p.abstract_syntax.clone(), true, true);
            }
        }
        options
    }

    /// Connect (over TLS when configured) and negotiate the association.
    async fn establish(
        &self,
        options: ClientAssociationOptions<'static>,
    ) -> Result<UpstreamLink, ScuError> {
        let address = self.config.address.as_str();
        let Some(tls) = &self.tls else {
            let mut assoc = options
                .establish_async(address)
                .await
                .map_err(|e| self.associate_error(e))?;
            let _ = assoc.inner_stream().set_nodelay(true);
            return Ok(UpstreamLink::Plain(Box::new(DimseConnection::new(assoc))));
        };
        let mut assoc = options
            .tls_config(Arc::clone(&tls.config))
            .server_name(&tls.server_name)
            .establish_tls_async(address)
            .await
            .map_err(|e| self.associate_error(e))?;
        let _ = assoc.inner_stream().get_ref().0.set_nodelay(true);
        Ok(UpstreamLink::Tls(Box::new(DimseConnection::new(assoc))))
    }

    /// A failed association: a TLS handshake failure says so, anything else is the network
    /// or the PACS refusing us.
    fn associate_error(&self, source: dicom_ul::association::Error) -> ScuError {
        let tls_reason = self.tls.as_ref().and_then(|_| tls::tls_failure(&source));
        match tls_reason {
            Some(reason) => ScuError::Tls {
                upstream: self.name().into(),
                address: self.config.address.clone(),
                reason,
            },
            None => ScuError::Associate {
                upstream: self.name().into(),
                address: self.config.address.clone(),
                source: Box::new(source),
            },
        }
    }

    /// C-ECHO: how long the round trip took.
    pub async fn echo(&self) -> Result<Duration, ScuError> {
        let start = Instant::now();
        let mut assoc = self
            .associate(&[Proposal::new(VERIFICATION, &UNCOMPRESSED)])
            .await?;
        let pc = assoc.accepted_context(VERIFICATION)?;
        let mut rq = Command::new(CommandField::CEchoRq, false);
        rq.set_u16(tag::MESSAGE_ID, self.next_message_id());
        rq.set_uid(tag::AFFECTED_SOP_CLASS_UID, VERIFICATION);
        assoc.send_command(pc.0, &rq).await?;
        let (_, rsp) = assoc.next_command().await?;
        assoc.release().await;
        match rsp.status() {
            Some(Status::SUCCESS) => Ok(start.elapsed()),
            other => Err(self.failed(&format!("C-ECHO answered {other:?}"))),
        }
    }

    fn timeout_error(&self) -> ScuError {
        ScuError::Timeout {
            upstream: self.name().into(),
            timeout: self.timeout(),
        }
    }

    pub fn failed(&self, message: &str) -> ScuError {
        ScuError::Failed {
            upstream: self.name().into(),
            message: message.into(),
        }
    }
}

impl UpstreamAssociation {
    fn wrap(&self, source: DimseError) -> ScuError {
        ScuError::Dimse {
            upstream: self.upstream.clone(),
            source: Box::new(source),
        }
    }

    /// The accepted presentation context (id, transfer syntax) for an abstract syntax.
    pub fn accepted_context(&self, abstract_syntax: &str) -> Result<(u8, String), ScuError> {
        self.accepted_contexts(abstract_syntax)
            .into_iter()
            .next()
            .ok_or_else(|| ScuError::NotAccepted {
                upstream: self.upstream.clone(),
                what: abstract_syntax.into(),
            })
    }

    fn presentation_contexts(&self) -> &[PresentationContextNegotiated] {
        on_link!(&self.link, c => c.association().presentation_contexts())
    }

    /// Every accepted presentation context for an abstract syntax.
    pub fn accepted_contexts(&self, abstract_syntax: &str) -> Vec<(u8, String)> {
        self.presentation_contexts()
            .iter()
            .filter(|pc| {
                pc.reason == PresentationContextResultReason::Acceptance
                    && pc.abstract_syntax.trim_end_matches('\0') == abstract_syntax
            })
            .map(|pc| (pc.id, pc.transfer_syntax.trim_end_matches('\0').to_string()))
            .collect()
    }

    /// The transfer syntax negotiated on a presentation context.
    pub fn context_ts(&self, pc_id: u8) -> Option<String> {
        self.presentation_contexts()
            .iter()
            .find(|pc| pc.id == pc_id)
            .map(|pc| pc.transfer_syntax.trim_end_matches('\0').to_string())
    }

    pub async fn send_command(&mut self, pc_id: u8, c: &Command) -> Result<(), ScuError> {
        let r = on_link!(&mut self.link, conn => conn.send_command(pc_id, c).await);
        r.map_err(|e| self.wrap(e))
    }

    pub async fn send_data_set(&mut self, pc_id: u8, data: &[u8]) -> Result<(), ScuError> {
        let r = on_link!(&mut self.link, conn => conn.send_data_set(pc_id, data).await);
        r.map_err(|e| self.wrap(e))
    }

    /// The next command from the PACS (bounded by the DIMSE timeout).
    pub async fn next_command(&mut self) -> Result<(u8, Command), ScuError> {
        let timeout = self.timeout;
        let event =
            on_link!(&mut self.link, c => tokio::time::timeout(timeout, c.next_event()).await);
        match event {
            Err(_) => Err(ScuError::Timeout {
                upstream: self.upstream.clone(),
                timeout,
            }),
            Ok(Err(e)) => Err(self.wrap(e)),
            Ok(Ok(Event::Command { pc_id, command })) => Ok((pc_id, command)),
            Ok(Ok(Event::Released)) => Err(ScuError::Failed {
                upstream: self.upstream.clone(),
                message: "the PACS released the association mid-operation".into(),
            }),
        }
    }

    /// Read a (small) data set that follows a command.
    pub async fn read_data_set(&mut self, limit: usize) -> Result<Vec<u8>, ScuError> {
        let r = on_link!(&mut self.link, c => c.read_small_data_set(limit).await);
        r.map_err(|e| self.wrap(e))
    }

    /// Store the data set of a C-STORE-RQ (a C-GET sub-operation) and answer it.
    pub async fn store_and_answer(
        &mut self,
        store: &Arc<Store>,
        pc_id: u8,
        request: &Command,
        calling_ae: &str,
        announce: impl FnOnce(&StoredInstance),
    ) -> Result<Option<StoredInstance>, ScuError> {
        use super::store_scp::store_and_answer as store_one;
        let r = on_link!(&mut self.link, c => {
            store_one(&mut **c, store, pc_id, request, calling_ae, announce).await
        });
        r.map_err(|e| self.wrap(e))
    }

    /// Release politely; a PACS that does not answer the release is simply disconnected.
    pub async fn release(self) {
        let upstream = self.upstream.clone();
        if let Err(e) = on_link!(self.link, c => c.release().await) {
            tracing::debug!(%upstream, error = %e, "release not acknowledged");
        }
    }

    pub async fn abort(self) {
        let _ = on_link!(self.link, c => c.abort().await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(max_associations: usize) -> Arc<Upstream> {
        let config = UpstreamConfig {
            name: "a".into(),
            ae_title: "A".into(),
            address: "127.0.0.1:1".into(),
            retrieve: Default::default(),
            move_destination: None,
            max_associations,
            timeout: Duration::from_secs(30),
            character_set: "ISO_IR 192".into(),
            window: None,
            bandwidth: None,
            tls: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: None,
        };
        Arc::new(Upstream::new(config, "US", "US").unwrap())
    }

    #[tokio::test]
    async fn a_waiting_viewer_gets_the_slot_before_background_work() {
        let up = upstream(1);
        let held = up.slot(&Urgency::Interactive).await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let spawn_taker = |urgency: Urgency, who: &'static str| {
            let (up, order) = (Arc::clone(&up), Arc::clone(&order));
            tokio::spawn(async move {
                let slot = up.slot(&urgency).await.unwrap();
                order.lock().unwrap().push(who);
                tokio::task::yield_now().await;
                drop(slot);
            })
        };
        let background = spawn_taker(Urgency::background(), "prefetch");
        tokio::task::yield_now().await;
        let viewer = spawn_taker(Urgency::Interactive, "viewer");
        while up.interactive_waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        viewer.await.unwrap();
        background.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["viewer", "prefetch"]);
    }

    #[test]
    fn background_work_joined_by_a_viewer_becomes_interactive() {
        let u = Urgency::background();
        assert!(!u.is_interactive());
        assert_eq!(u.priority(), super::super::command::Priority::Low);
        u.clone().promote();
        assert!(u.is_interactive());
    }
}
