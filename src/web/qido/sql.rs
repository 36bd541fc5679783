//! SQL generation: a page SELECT per query, with every value bound as a parameter, and a
//! COUNT over the same conditions for when the page is full (so that the page itself can
//! walk an index in sort order and stop at its LIMIT). Table aliases are `s` (study), `se`
//! (series) and `i` (instance).

use rusqlite::types::Value as SqlValue;

use super::attrs::{self, alias, Column, Kind};
use super::matching::{has_wildcard, Matcher};
use super::{Filter, QidoLevel, QidoQuery};

/// A statement and its parameters, bound in order as `?1`, `?2`, ...
pub(crate) struct Statement {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

#[derive(Default)]
struct Params(Vec<SqlValue>);

impl Params {
    fn bind(&mut self, value: impl Into<SqlValue>) -> String {
        self.0.push(value.into());
        format!("?{}", self.0.len())
    }

    fn bind_all<T: Clone + Into<SqlValue>>(&mut self, values: &[T]) -> String {
        values
            .iter()
            .map(|v| self.bind(v.clone()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The page of matches, and the number of all matches (asked only when the page is full).
pub(crate) struct Query {
    pub page: Statement,
    pub count: Statement,
}

pub(crate) fn build(q: &QidoQuery) -> Query {
    let mut p = Params::default();
    let mut conds = scope_conditions(q, &mut p);
    conds.extend(q.filters.iter().map(|f| condition(q, f, &mut p)));
    let where_clause = if conds.is_empty() {
        "1".to_owned()
    } else {
        conds.join(" AND ")
    };
    let count = Statement {
        sql: format!(
            "SELECT COUNT(*) FROM {} WHERE {where_clause}",
            from_clause(q.level)
        ),
        params: p.0.clone(),
    };
    let limit = p.bind(i64::try_from(q.limit).unwrap_or(i64::MAX));
    let offset = p.bind(i64::try_from(q.offset).unwrap_or(i64::MAX));
    let page = Statement {
        sql: format!(
            "SELECT {} FROM {} WHERE {where_clause} ORDER BY {} LIMIT {limit} OFFSET {offset}",
            select_list(q),
            from_clause(q.level),
            order_by(q.level),
        ),
        params: p.0,
    };
    Query { page, count }
}

fn levels_upto(level: QidoLevel) -> impl Iterator<Item = QidoLevel> {
    [QidoLevel::Study, QidoLevel::Series, QidoLevel::Instance]
        .into_iter()
        .filter(move |l| *l <= level)
}

/// Name under which a column is selected, e.g. `s_patient_name`.
pub(crate) fn column_alias(c: &Column) -> String {
    format!("{}_{}", alias(c.level), c.name)
}

/// Name under which a level's `meta_json` is selected, e.g. `se_meta`.
pub(crate) fn meta_alias(level: QidoLevel) -> String {
    format!("{}_meta", alias(level))
}

fn select_list(q: &QidoQuery) -> String {
    let mut cols: Vec<String> = levels_upto(q.level)
        .flat_map(attrs::columns_of)
        .map(|c| format!("{}.\"{}\" AS {}", alias(c.level), c.name, column_alias(c)))
        .collect();
    cols.extend(
        meta_levels(q)
            .into_iter()
            .map(|l| format!("{}.meta_json AS {}", alias(l), meta_alias(l))),
    );
    cols.join(", ")
}

/// Levels whose `meta_json` must be read to build the rows.
pub(crate) fn meta_levels(q: &QidoQuery) -> Vec<QidoLevel> {
    let from_meta = |tag: &u32| {
        attrs::column(*tag).is_none()
            && !attrs::is_computed(*tag)
            && attrs::level_of(*tag) <= q.level
    };
    if q.returned.iter().any(from_meta) {
        levels_upto(q.level).collect()
    } else if q.include_all {
        levels_upto(q.level)
            .filter(|l| q.merged_levels().contains(l))
            .collect()
    } else {
        Vec::new()
    }
}

/// Order in which levels' `meta_json` are searched for an attribute: its own level
/// first, then the others from study down to the query level.
pub(crate) fn lookup_order(tag: u32, level: QidoLevel) -> Vec<QidoLevel> {
    let own = attrs::level_of(tag);
    let mut order: Vec<QidoLevel> = levels_upto(level).filter(|l| *l == own).collect();
    order.extend(levels_upto(level).filter(|l| *l != own));
    order
}

fn from_clause(level: QidoLevel) -> &'static str {
    match level {
        QidoLevel::Study => "study s",
        QidoLevel::Series => "series se JOIN study s ON s.study_uid = se.study_uid",
        QidoLevel::Instance => {
            "instance i JOIN series se ON se.series_uid = i.series_uid JOIN study s ON s.study_uid = se.study_uid"
        }
    }
}

fn order_by(level: QidoLevel) -> &'static str {
    match level {
        QidoLevel::Study => "s.study_date DESC, s.study_time DESC, s.study_uid",
        QidoLevel::Series => "se.series_number IS NULL, se.series_number, se.series_uid",
        QidoLevel::Instance => "i.instance_number IS NULL, i.instance_number, i.sop_instance_uid",
    }
}

fn scope_conditions(q: &QidoQuery, p: &mut Params) -> Vec<String> {
    let mut conds = Vec::new();
    if let Some(study) = &q.scope.study_uid {
        conds.push(format!(
            "{}.study_uid = {}",
            alias(q.level),
            p.bind(study.clone())
        ));
    }
    if let Some(series) = &q.scope.series_uid {
        conds.push(format!("i.series_uid = {}", p.bind(series.clone())));
    }
    conds
}

/// SQL expression of a column, using the query level's own copy of the study and series
/// UIDs (indexed) instead of the joined table's.
fn column_expr(level: QidoLevel, c: &Column) -> String {
    let table = match c.name {
        "study_uid" => alias(level),
        "series_uid" if level == QidoLevel::Instance => "i",
        _ => alias(c.level),
    };
    format!("{table}.\"{}\"", c.name)
}

/// Expression yielding the attribute's value as index text, and its column if it has one.
fn value_expr(q: &QidoQuery, tag: u32, p: &mut Params) -> (String, Option<&'static Column>) {
    if let Some(c) = attrs::column_at(tag, q.level) {
        return (column_expr(q.level, c), Some(c));
    }
    let path = p.bind(format!("$.\"{tag:08X}\""));
    let parts: Vec<String> = lookup_order(tag, q.level)
        .into_iter()
        .map(|l| format!("json_extract({}.meta_json, {path})", alias(l)))
        .collect();
    let json = if parts.len() == 1 {
        parts.join("")
    } else {
        format!("COALESCE({})", parts.join(", "))
    };
    (format!("qido_values({json})"), None)
}

/// Turns a DICOM wildcard pattern into a GLOB pattern (GLOB is case-sensitive, as
/// PS3.4 requires for non-PN values; `*` and `?` mean the same, only `[` needs escaping).
fn glob_pattern(pattern: &str) -> String {
    pattern.replace('[', "[[]")
}

fn condition(q: &QidoQuery, f: &Filter, p: &mut Params) -> String {
    let (expr, col) = value_expr(q, f.attr.tag, p);
    let single_column = col.is_some_and(|c| c.kind != Kind::Multi);
    match &f.matcher {
        Matcher::Text(values) if single_column => text_condition(&expr, values, p),
        Matcher::Text(values) => format!("qido_text_match({expr}, {})", p.bind_all(values)),
        Matcher::Pn(values) => format!(
            "qido_pn_match({expr}, {}, {})",
            p.bind(q.fuzzy),
            p.bind_all(values)
        ),
        Matcher::Range { vr, lo, hi } if col.is_some() && *vr == dicom_core::VR::DA => {
            let mut parts = vec![format!("{expr} <> ''")];
            parts.extend(
                lo.iter()
                    .map(|l| format!("{expr} >= {}", p.bind(l.clone()))),
            );
            parts.extend(
                hi.iter()
                    .map(|h| format!("{expr} <= {}", p.bind(h.clone()))),
            );
            format!("({})", parts.join(" AND "))
        }
        Matcher::Range { vr, lo, hi } => format!(
            "qido_range_match({expr}, {}, {}, {})",
            p.bind(vr.to_string().to_owned()),
            p.bind(lo.clone()),
            p.bind(hi.clone())
        ),
        Matcher::Num(nums) if col.is_some() => format!("{expr} IN ({})", p.bind_all(nums)),
        Matcher::Num(nums) => format!("qido_num_match({expr}, {})", p.bind_all(nums)),
    }
}

fn text_condition(expr: &str, values: &[String], p: &mut Params) -> String {
    let (wild, exact): (Vec<&String>, Vec<&String>) = values.iter().partition(|v| has_wildcard(v));
    let mut ors = Vec::new();
    if !exact.is_empty() {
        let exact: Vec<String> = exact.into_iter().cloned().collect();
        ors.push(format!("{expr} IN ({})", p.bind_all(&exact)));
    }
    ors.extend(
        wild.into_iter()
            .map(|w| format!("{expr} GLOB {}", p.bind(glob_pattern(w)))),
    );
    format!("({})", ors.join(" OR "))
}
