//! The audit middleware: after every DICOMweb, admin or metrics request (whatever its outcome,
//! 401 and 403 included), one record for the audit trail (`crate::audit`): the event from the
//! route (search, instances accessed, application activity), the outcome from the status,
//! the user the auth middleware found (or `unauthenticated`), the peer address, and the
//! study of the path. The query string is not recorded: it may name patients.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::audit::{outcome_of_status, Event, Record};
use crate::auth::Principal;

pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let request = format!("{} {path}", req.method());
    let from = peer(&req);
    let response = next.run(req).await;
    let user = response
        .extensions()
        .get::<Principal>()
        .map_or("unauthenticated", |p| p.user.as_str());
    let status = response.status();
    let event = event_of(&path, &state.config.http.base_path);
    let mut rec = Record::new(
        event,
        outcome_of_status(status.as_u16()),
        status.to_string(),
        user,
        &from,
    );
    rec.request = request;
    if let Some(study) = study_of(&path) {
        rec = rec.study(study);
    }
    state.audit.record(rec);
    response
}

fn peer(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".into(), |c| c.0.ip().to_string())
}

fn event_of(path: &str, base: &str) -> Event {
    let rest = path.strip_prefix(base).unwrap_or(path);
    if path.starts_with("/admin") || path == "/metrics" {
        return Event::ApplicationActivity;
    }
    let last = rest.rsplit('/').next().unwrap_or("");
    match last {
        "studies" | "series" | "instances" => Event::Query,
        _ => Event::InstancesAccessed,
    }
}

/// The segment after `studies/` in a path.
fn study_of(path: &str) -> Option<&str> {
    let mut segs = path.split('/');
    segs.by_ref().find(|s| *s == "studies")?;
    segs.next().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_studies() {
        let b = "/dicom-web";
        assert_eq!(event_of("/dicom-web/studies", b), Event::Query);
        assert_eq!(event_of("/dicom-web/studies/1.2/series", b), Event::Query);
        assert_eq!(
            event_of("/dicom-web/studies/1.2/metadata", b),
            Event::InstancesAccessed
        );
        assert_eq!(event_of("/admin/jobs", b), Event::ApplicationActivity);
        assert_eq!(study_of("/dicom-web/studies/1.2/series/3"), Some("1.2"));
        assert_eq!(study_of("/dicom-web/studies"), None);
        assert_eq!(study_of("/admin/cache/studies/9.8"), Some("9.8"));
    }
}
