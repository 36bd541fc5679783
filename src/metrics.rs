//! Prometheus metrics: process-wide counters, rendered in the text exposition format at
//! `/metrics`. No patient data ever goes into a label.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// Counters of the whole process.
        #[derive(Default)]
        pub struct Metrics { $(pub $name: AtomicU64,)* }

        impl Metrics {
            /// Render all counters in the Prometheus text format.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# HELP tsunagi_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE tsunagi_{} counter", stringify!($name));
                    let _ = writeln!(out, "tsunagi_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
                out
            }
        }
    };
}

counters! {
    associations_accepted_total: "Inbound DIMSE associations accepted.",
    associations_rejected_total: "Inbound DIMSE associations rejected (limit or access).",
    cstore_received_total: "C-STORE requests answered with success.",
    cstore_failed_total: "C-STORE requests answered with a failure status.",
    cstore_bytes_total: "Bytes of instances stored by C-STORE.",
    cecho_total: "C-ECHO requests answered.",
    http_requests_total: "HTTP requests served.",
    http_shed_total: "HTTP requests answered 503 because http.max_concurrent_requests were running.",
    audit_records_total: "Audit records queued for the audit trail.",
    audit_dropped_total: "Audit records dropped because the writer fell behind.",
    audit_syslog_sent_total: "Audit records delivered to the syslog collector.",
    audit_syslog_dropped_total: "Audit records not sent to the syslog collector (its queue was full).",
    qido_requests_total: "QIDO-RS searches answered.",
    wado_instances_total: "Instances sent by WADO-RS.",
    wado_frames_total: "Frames sent by WADO-RS.",
    wado_bytes_total: "Body bytes of WADO-RS instance and frame parts.",
    frames_converted_total: "Frames encoded in another transfer syntax (conversion cache misses).",
    cache_hits_total: "WADO-RS reads answered from the cache alone.",
    cache_misses_total: "WADO-RS reads that needed a retrieve from a PACS.",
    evicted_studies_total: "Studies evicted to keep the cache within store.max_size.",
    evicted_bytes_total: "Bytes evicted to keep the cache within store.max_size.",
    purged_studies_total: "Studies purged by an administrator.",
    jobs_created_total: "Prefetch jobs created.",
    jobs_late_total: "Prefetch jobs that were not finished by their due time.",
    prefetch_studies_done_total: "Studies a prefetch job brought in completely.",
    prefetch_studies_failed_total: "Studies a prefetch job gave up on after its attempts.",
    prefetch_retries_total: "Prefetch study attempts that failed and were scheduled again.",
    prefetch_instances_total: "Instances that arrived for prefetch jobs.",
    prefetch_bytes_total: "Bytes of studies completed by prefetch jobs.",
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
