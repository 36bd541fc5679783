//! TEMPORARY STUB (replaced by the real module).
pub enum QidoLevel {
    Study,
    Series,
    Instance,
}
pub struct QidoScope {
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
}
pub struct QidoQuery;
impl QidoQuery {
    pub fn apply_limits(&mut self, _d: usize, _m: usize) {}
}
pub struct QidoRows {
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    pub remaining: usize,
}
#[derive(Debug, thiserror::Error)]
pub enum QidoError {
    #[error("x")]
    Database(#[from] rusqlite::Error),
}
impl QidoError {
    pub fn is_client_error(&self) -> bool {
        false
    }
}
pub fn parse_query(
    _l: QidoLevel,
    _s: QidoScope,
    _p: &[(String, String)],
) -> Result<QidoQuery, QidoError> {
    Ok(QidoQuery)
}
pub fn run_query(
    _c: &rusqlite::Connection,
    _q: &QidoQuery,
    _b: &str,
) -> Result<QidoRows, QidoError> {
    Ok(QidoRows {
        rows: vec![],
        remaining: 0,
    })
}
pub fn register_functions(_c: &rusqlite::Connection) -> rusqlite::Result<()> {
    Ok(())
}
