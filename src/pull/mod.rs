//! Pull-through: what makes Tsunagi a gateway rather than a store. Owns the upstream PACS
//! (association budgets), federated search (`search`), and retrieval on a cache miss
//! (`retrieve`): one retrieve per key however many viewers ask, instances announced as
//! they become durable so responses can stream before the move ends.

pub mod retrieve;
pub mod search;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value as Json};
use tokio::sync::broadcast;

use crate::audit::Auditor;
use crate::auth::referral::Patient;
use crate::config::{Config, PullConfig};
use crate::dimse::retrieve_scu::RetrieveTarget;
use crate::dimse::scp::StoreEvent;
use crate::dimse::scu::Upstream;
use crate::dimse::tls::UpstreamTlsError;
use crate::store::Store;
use retrieve::Retrieval;
pub use retrieve::{Progress, RetrieveError};

/// Cached C-FIND answers: (matches, truncated).
type FindCache = moka::future::Cache<String, Arc<(Vec<Map<String, Json>>, bool)>>;

pub struct Pull {
    pub upstreams: Vec<Arc<Upstream>>,
    pub config: PullConfig,
    pub our_ae: String,
    store: Arc<Store>,
    events: broadcast::Sender<StoreEvent>,
    query_cache: FindCache,
    /// Study UID → names of the upstreams known to hold it.
    locations: moka::sync::Cache<String, Vec<String>>,
    /// Study UID → its patient, as a search result named it (for referral rules).
    patients: moka::sync::Cache<String, Patient>,
    running: Mutex<HashMap<RetrieveTarget, Arc<Retrieval>>>,
    /// Instances a C-GET brings are imports, audited as C-STOREs pushed to us are.
    auditor: Auditor,
}

impl Pull {
    /// Fails when a TLS upstream's certificate files cannot be used.
    pub fn new(
        config: &Config,
        store: Arc<Store>,
        events: broadcast::Sender<StoreEvent>,
        auditor: Auditor,
    ) -> Result<Arc<Self>, UpstreamTlsError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                Upstream::new(
                    u.clone(),
                    &config.dimse.ae_title,
                    config.move_destination(u),
                )
                .map(Arc::new)
            })
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Pull {
            upstreams,
            config: config.pull.clone(),
            our_ae: config.dimse.ae_title.clone(),
            store,
            events,
            query_cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(config.pull.query_cache_ttl.max(Duration::from_millis(1)))
                .build(),
            locations: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
            patients: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
            running: Mutex::new(HashMap::new()),
            auditor,
        }))
    }

    /// True when there is at least one upstream to search or pull from.
    pub fn enabled(&self) -> bool {
        !self.upstreams.is_empty()
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name() == name)
    }

    /// Remember that `upstream` holds `study` (retrieves try it first).
    pub fn note_location(&self, study: &str, upstream: &str) {
        let mut known = self.locations.get(study).unwrap_or_default();
        if !known.iter().any(|n| n == upstream) {
            known.push(upstream.to_string());
            self.locations.insert(study.to_string(), known);
        }
    }

    /// The upstreams a federated search found `study` in.
    pub fn known_locations(&self, study: &str) -> Vec<String> {
        self.locations.get(study).unwrap_or_default()
    }

    /// Remember the patient a search result gave for `study`.
    pub fn note_patient(&self, study: &str, patient: Patient) {
        self.patients.insert(study.to_string(), patient);
    }

    /// The patient a federated search gave for `study`.
    pub fn known_patient(&self, study: &str) -> Option<Patient> {
        self.patients.get(study)
    }
}
