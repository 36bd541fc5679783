//! Tsunagi (つなぎ): a DICOM imaging gateway and DICOMweb proxy for regional
//! health-information networks.
//!
//! - [`dimse`]: the DIMSE side (C-ECHO and C-STORE SCP; our typed DIMSE layer).
//! - [`store`]: the cache (durable files, SQLite index, in-memory hot tier).
//! - [`web`]: the HTTP side (QIDO-RS, WADO-RS, health and metrics).
//! - [`pull`]: federated search and pull-through retrieval from hospital PACS.
//! - [`jobs`]: prefetch jobs (cache warming for referrals) and their scheduler.
//! - [`transcode`]: per-frame codecs (decode any stored syntax, encode on request) and rendering.
//! - [`charset`], [`dicom_json`]: text in every Specific Character Set, and DICOM JSON.
//! - [`config`], [`app`]: configuration and wiring; [`cli`]: admin commands (prefetch, jobs, cache).

pub mod app;
pub mod audit;
pub mod auth;
pub mod charset;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dicom_json;
pub mod dimse;
pub mod jobs;
pub mod metrics;
pub mod pull;
pub mod store;
pub mod transcode;
pub mod types;
pub mod web;
