//! QIDO-RS query engine (PS3.18 §8.3.4 and §10.6, matching per PS3.4 C.2.2.2).
//!
//! Owns everything between the percent-decoded query parameters of a QIDO-RS search and
//! the DICOM JSON result objects: parameter parsing and validation ([`parse_query`]),
//! SQL generation over the cache index (`store/schema.sql`), the SQL functions that the
//! generated SQL needs ([`register_functions`]) and the result objects ([`run_query`]).
//! HTTP (routing, content negotiation, status codes, the `Warning` header) is not here.
//!
//! Matching keys are keywords (`PatientName`) or tags (`00100010`). Attributes with an
//! index column are matched on the column; any other attribute of the query level or a
//! level above is matched on that level's `meta_json` (SQLite JSON1). Matching:
//!
//! | kind | applies to | how |
//! |---|---|---|
//! | universal | all | empty value or `*`: no condition, attribute returned |
//! | single value | text VRs | exact, case-sensitive |
//! | wildcard `*` `?` | AE AS CS LO SH LT ST UT UC UR | SQL `GLOB` (case-sensitive) on columns, Rust otherwise |
//! | value list `a\b` | AE AS CS (also `,`) LO SH UC PN, numbers | any listed value matches |
//! | UID list `a,b` / `a\b` | UI | any listed UID; UIDs validated, no wildcards |
//! | range `a-b`, `-b`, `a-`, single | DA TM DT | inclusive; partial TM/DT bounds extended (`-10` is up to 10:59:59.999999); DT offsets ignored |
//! | numbers | IS DS US SS UL SL FL FD SV UV | numeric equality |
//! | person name | PN | see below |
//! | multi-valued | ModalitiesInStudy and `meta_json` values | any stored value matches |
//!
//! Person names are matched case-insensitively against the whole value and against each
//! component group (alphabetic, ideographic, phonetic), so `山田*` finds
//! `Yamada^Tarou=山田^太郎=やまだ^たろう`; a query with '=' is matched group by group.
//! With `fuzzymatching=true` a name also matches when the query is a prefix of any one
//! name component of any group (`tar` finds `Yamada^Tarou`), or, for a query with '^'
//! (`yam^tar`), when each query component is a prefix of the same component.
//!
//! Results hold the attributes of PS3.18 Tables 10.6.3-3/-4/-5 for the query level and
//! for the levels above it that the path does not fix, every matching key, and the
//! `includefield` attributes (taken from columns or the levels' `meta_json`; attributes of
//! lower levels are ignored; `all` adds the `meta_json` of the returned levels and all their
//! columns). SpecificCharacterSet is always `ISO_IR 192` and InstanceAvailability `ONLINE`.
//! Pages are `limit` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) results from
//! `offset`, studies newest first, series and instances by number; `orderby` is ignored.

mod attrs;
mod matching;
mod row;
mod sql;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use dicom_core::VR;

use attrs::Attr;
use matching::Matcher;

/// Results per page when the request has no `limit` (see [`QidoQuery::apply_limits`]).
pub const DEFAULT_LIMIT: usize = 1000;
/// Largest page; a larger `limit` is lowered to this (the rest is reported in `remaining`)
/// (see [`QidoQuery::apply_limits`]).
pub const MAX_LIMIT: usize = 10_000;

/// The level searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QidoLevel {
    Study,
    Series,
    Instance,
}

impl QidoLevel {
    fn name(self) -> &'static str {
        match self {
            QidoLevel::Study => "study",
            QidoLevel::Series => "series",
            QidoLevel::Instance => "instance",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            QidoLevel::Study => "studies",
            QidoLevel::Series => "series",
            QidoLevel::Instance => "instances",
        }
    }
}

/// UIDs fixed by the path: `/studies/{s}/series`, `/studies/{s}/instances`,
/// `/studies/{s}/series/{se}/instances`, or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QidoScope {
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
}

/// A parsed and validated search.
#[derive(Debug, Clone)]
pub struct QidoQuery {
    pub level: QidoLevel,
    pub scope: QidoScope,
    /// Page size: the request's `limit`, or the default, at most the maximum.
    pub limit: usize,
    pub offset: usize,
    pub fuzzy: bool,
    pub include_all: bool,
    requested_limit: Option<usize>,
    filters: Vec<Filter>,
    returned: BTreeSet<u32>,
}

impl QidoQuery {
    /// Sets the page size from configured limits: `default` when the request had no
    /// `limit`, and never more than `max`. [`parse_query`] applies [`DEFAULT_LIMIT`] and
    /// [`MAX_LIMIT`].
    pub fn apply_limits(&mut self, default: usize, max: usize) {
        self.limit = self.requested_limit.unwrap_or(default).clamp(1, max.max(1));
    }

    /// Tags (`0xGGGGEEEE`) of the attributes returned when present or applicable.
    pub fn returned_tags(&self) -> impl Iterator<Item = u32> + '_ {
        self.returned.iter().copied()
    }

    /// The query as C-FIND keys (PS3.4 C.2.2.2 syntax): matching keys with their values,
    /// the path's UIDs, and every returned attribute as an empty return key.
    pub fn dimse_keys(&self) -> Vec<DimseKey> {
        let mut keys: Vec<DimseKey> = self
            .filters
            .iter()
            .map(|f| DimseKey {
                tag: f.attr.tag,
                vr: f.attr.vr,
                value: f.matcher.to_dimse(),
            })
            .collect();
        let scoped = [
            (
                attrs::t(dicom_dictionary_std::tags::STUDY_INSTANCE_UID),
                &self.scope.study_uid,
            ),
            (
                attrs::t(dicom_dictionary_std::tags::SERIES_INSTANCE_UID),
                &self.scope.series_uid,
            ),
        ];
        for (tag, uid) in scoped {
            if let Some(uid) = uid {
                keys.retain(|k| k.tag != tag);
                keys.push(DimseKey {
                    tag,
                    vr: VR::UI,
                    value: uid.clone(),
                });
            }
        }
        for tag in self.returned_tags() {
            if !keys.iter().any(|k| k.tag == tag) && !attrs::is_computed(tag) {
                keys.push(DimseKey {
                    tag,
                    vr: attrs::vr_of(tag),
                    value: String::new(),
                });
            }
        }
        keys.sort_by_key(|k| k.tag);
        keys
    }

    /// How many real matching keys (not universal) the query has, path UIDs included.
    pub fn criteria_count(&self) -> usize {
        self.filters.len()
            + usize::from(self.scope.study_uid.is_some())
            + usize::from(self.scope.series_uid.is_some())
    }

    /// Levels whose attributes are returned (and whose `meta_json` `includefield=all` merges).
    fn merged_levels(&self) -> Vec<QidoLevel> {
        attrs::returned_levels(self.level, &self.scope)
    }
}

#[derive(Debug, Clone)]
struct Filter {
    attr: Attr,
    matcher: Matcher,
}

/// One C-FIND key: tag, VR and the value in DIMSE matching syntax (empty = return key).
#[derive(Debug, Clone, PartialEq)]
pub struct DimseKey {
    pub tag: u32,
    pub vr: VR,
    pub value: String,
}

/// One page of results.
#[derive(Debug, Clone, Default)]
pub struct QidoRows {
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// Matches after `offset + limit` that were not returned.
    pub remaining: usize,
}

/// Errors. `Display` is the message for the HTTP 400 body (client errors).
#[derive(Debug, thiserror::Error)]
pub enum QidoError {
    #[error("{}", unknown_message(.parameter, .name))]
    UnknownAttribute { parameter: String, name: String },
    #[error("invalid value '{value}' for {attribute}: {reason}")]
    InvalidValue {
        attribute: String,
        value: String,
        reason: String,
    },
    #[error("invalid query parameter '{name}': {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("corrupt cache index: {0}")]
    Corrupt(String),
}

fn unknown_message(parameter: &str, name: &str) -> String {
    if parameter == name {
        format!(
            "unknown query parameter '{name}': it is neither a QIDO-RS parameter (includefield, limit, offset, \
             fuzzymatching, orderby) nor a DICOM keyword or 8-hex-digit tag of a standard attribute"
        )
    } else {
        format!("unknown attribute '{name}' in {parameter}: not a DICOM keyword or 8-hex-digit tag of a standard attribute")
    }
}

impl QidoError {
    /// True for errors caused by the request (HTTP 400); false for server faults (500).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, QidoError::Database(_) | QidoError::Corrupt(_))
    }
}

/// Shortens and escapes request text quoted in messages.
fn quote(s: &str) -> String {
    let escaped: String = s.escape_debug().collect();
    match escaped.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &escaped[..i]),
        None => escaped,
    }
}

fn invalid_parameter(name: &str, reason: impl Into<String>) -> QidoError {
    QidoError::InvalidParameter {
        name: quote(name),
        reason: reason.into(),
    }
}

/// Registers the SQL functions the generated SQL uses. Call once on every connection
/// that runs [`run_query`] (e.g. when it is opened).
pub fn register_functions(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    matching::register(conn)
}

/// Parses and validates a search. `params` are the percent-decoded query pairs in order.
pub fn parse_query(
    level: QidoLevel,
    scope: QidoScope,
    params: &[(String, String)],
) -> Result<QidoQuery, QidoError> {
    check_scope(level, &scope)?;
    let mut p = Parsed::default();
    for (name, value) in params {
        if name.contains('\0') || value.contains('\0') {
            return Err(invalid_parameter(
                name,
                "the name or value contains a NUL character",
            ));
        }
        match name.to_ascii_lowercase().as_str() {
            "includefield" => p.add_includefield(name, value)?,
            "limit" => set_once(&mut p.limit, name, parse_count(name, value, 1)?)?,
            "offset" => set_once(&mut p.offset, name, parse_count(name, value, 0)?)?,
            "fuzzymatching" => set_once(&mut p.fuzzy, name, parse_bool(name, value)?)?,
            // Sorting is fixed; `accept` and `charset` are for the HTTP layer.
            "orderby" | "accept" | "charset" => {}
            _ => p.add_match(level, name, value)?,
        }
    }
    p.finish(level, scope)
}

fn check_scope(level: QidoLevel, scope: &QidoScope) -> Result<(), QidoError> {
    let allowed = match level {
        QidoLevel::Study => scope.study_uid.is_none() && scope.series_uid.is_none(),
        QidoLevel::Series => scope.series_uid.is_none(),
        QidoLevel::Instance => scope.series_uid.is_none() || scope.study_uid.is_some(),
    };
    if !allowed {
        return Err(invalid_parameter(
            "path",
            format!("this path cannot scope a search for {}", level.plural()),
        ));
    }
    let uids = [
        ("StudyInstanceUID", &scope.study_uid),
        ("SeriesInstanceUID", &scope.series_uid),
    ];
    for (keyword, uid) in uids {
        if let Some(uid) = uid {
            matching::check_uid(uid).map_err(|reason| QidoError::InvalidValue {
                attribute: format!("{keyword} in the path"),
                value: quote(uid),
                reason,
            })?;
        }
    }
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), QidoError> {
    if slot.replace(value).is_some() {
        return Err(invalid_parameter(name, "given more than once"));
    }
    Ok(())
}

fn parse_count(name: &str, value: &str, min: usize) -> Result<usize, QidoError> {
    let n: u64 = value.trim().parse().map_err(|_| {
        invalid_parameter(
            name,
            format!("'{}' is not a non-negative integer", quote(value)),
        )
    })?;
    if n < min as u64 {
        return Err(invalid_parameter(name, format!("must be at least {min}")));
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

fn parse_bool(name: &str, value: &str) -> Result<bool, QidoError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid_parameter(
            name,
            format!("'{}' is neither true nor false", quote(value)),
        )),
    }
}

/// A matching key as given: the attribute, the parameter name used, and its values.
struct MatchKey {
    attr: Attr,
    name: String,
    values: Vec<String>,
}

#[derive(Default)]
struct Parsed {
    limit: Option<usize>,
    offset: Option<usize>,
    fuzzy: Option<bool>,
    include_all: bool,
    include: BTreeSet<u32>,
    matches: BTreeMap<u32, MatchKey>,
}

impl Parsed {
    fn add_includefield(&mut self, name: &str, value: &str) -> Result<(), QidoError> {
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item.eq_ignore_ascii_case("all") {
                self.include_all = true;
                continue;
            }
            if item.contains('.') {
                return Err(invalid_parameter(
                    name,
                    format!("'{}': sequence paths are not supported", quote(item)),
                ));
            }
            let attr = attrs::resolve(item).ok_or_else(|| QidoError::UnknownAttribute {
                parameter: name.to_owned(),
                name: quote(item),
            })?;
            self.include.insert(attr.tag);
        }
        Ok(())
    }

    fn add_match(&mut self, level: QidoLevel, name: &str, value: &str) -> Result<(), QidoError> {
        let attr = resolve_match_name(name)?;
        let attr_level = attrs::level_of(attr.tag);
        if attr_level > level {
            let hint = if attr.tag == attrs::t(dicom_dictionary_std::tags::MODALITY)
                && level == QidoLevel::Study
            {
                " (use ModalitiesInStudy)"
            } else {
                ""
            };
            return Err(invalid_parameter(
                name,
                format!(
                    "{} is held at {} level and cannot be a matching key when searching for {}{hint}",
                    attr.describe(),
                    attr_level.name(),
                    level.plural()
                ),
            ));
        }
        if !value.is_empty() {
            check_matchable(&attr, name)?;
        }
        if let Some(existing) = self.matches.get_mut(&attr.tag) {
            if !matches!(attr.vr, VR::UI | VR::CS) {
                return Err(invalid_parameter(
                    name,
                    format!("{} is given more than once (only UI and CS keys may repeat, as a value list)", attr.describe()),
                ));
            }
            existing.values.push(value.to_owned());
            return Ok(());
        }
        let key = MatchKey {
            attr,
            name: name.to_owned(),
            values: vec![value.to_owned()],
        };
        self.matches.insert(key.attr.tag, key);
        Ok(())
    }

    fn finish(self, level: QidoLevel, scope: QidoScope) -> Result<QidoQuery, QidoError> {
        let levels = attrs::returned_levels(level, &scope);
        let mut returned = attrs::default_tags(level, &levels);
        returned.extend(&self.include);
        returned.extend(self.matches.keys());
        if self.include_all {
            for &l in &levels {
                returned.extend(attrs::columns_of(l).map(|c| c.tag));
            }
        }
        let mut filters = Vec::new();
        for key in self.matches.into_values() {
            if let Some(matcher) = key_matcher(&key)? {
                filters.push(Filter {
                    attr: key.attr,
                    matcher,
                });
            }
        }
        let mut query = QidoQuery {
            level,
            scope,
            limit: DEFAULT_LIMIT,
            requested_limit: self.limit,
            offset: self.offset.unwrap_or(0),
            fuzzy: self.fuzzy.unwrap_or(false),
            include_all: self.include_all,
            filters,
            returned,
        };
        query.apply_limits(DEFAULT_LIMIT, MAX_LIMIT);
        Ok(query)
    }
}

/// Resolves a matching key name; dotted sequence paths are refused.
fn resolve_match_name(name: &str) -> Result<Attr, QidoError> {
    let unknown = |n: &str| QidoError::UnknownAttribute {
        parameter: quote(name),
        name: quote(n),
    };
    match name.split_once('.') {
        Some((first, _)) => {
            attrs::resolve(first).ok_or_else(|| unknown(first))?;
            Err(invalid_parameter(
                name,
                "sequence matching (dotted attribute paths) is not supported",
            ))
        }
        None => attrs::resolve(name).ok_or_else(|| unknown(name)),
    }
}

fn check_matchable(attr: &Attr, name: &str) -> Result<(), QidoError> {
    if attrs::is_computed(attr.tag) {
        return Err(invalid_parameter(
            name,
            format!(
                "{} is computed by the server; only an empty value (return it) is allowed",
                attr.describe()
            ),
        ));
    }
    matching::check_vr(attr.vr)
        .map_err(|reason| invalid_parameter(name, format!("{}: {reason}", attr.describe())))
}

fn key_matcher(key: &MatchKey) -> Result<Option<Matcher>, QidoError> {
    let value = key.values.join("\\");
    if key.values.len() > 1 && key.values.iter().any(String::is_empty) {
        return Ok(None);
    }
    matching::parse_matcher(key.attr.vr, &value).map_err(|reason| QidoError::InvalidValue {
        attribute: format!("{} (parameter '{}')", key.attr.describe(), quote(&key.name)),
        value: quote(&value),
        reason,
    })
}

/// Runs a search. `base_url` is the absolute DICOMweb root without trailing slash, used
/// for RetrieveURL and BulkDataURIs. The connection needs [`register_functions`].
pub fn run_query(
    conn: &rusqlite::Connection,
    q: &QidoQuery,
    base_url: &str,
) -> Result<QidoRows, QidoError> {
    let out = page_rows(conn, q, base_url)?;
    // A page shorter than the limit is the last one; only a full page needs the count.
    let remaining = if out.len() < q.limit {
        0
    } else {
        let query = sql::build(q);
        let mut stmt = conn.prepare_cached(&query.count.sql)?;
        let total: i64 = stmt
            .query_row(rusqlite::params_from_iter(query.count.params.iter()), |r| {
                r.get(0)
            })?;
        usize::try_from(total)
            .unwrap_or(0)
            .saturating_sub(q.offset.saturating_add(out.len()))
    };
    Ok(QidoRows {
        rows: out,
        remaining,
    })
}

/// The rows of one page (`offset`, `limit`), without counting the matches beyond it.
pub fn page_rows(
    conn: &rusqlite::Connection,
    q: &QidoQuery,
    base_url: &str,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, QidoError> {
    let base_url = base_url.trim_end_matches('/');
    let query = sql::build(q);
    let mut stmt = conn.prepare_cached(&query.page.sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(query.page.params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(row::row_to_json(row, q, base_url)?);
    }
    Ok(out)
}
