//! Matching (PS3.4 C.2.2.2): turning query values into [`Matcher`]s, validating them, and
//! the Rust side of matching that SQL cannot express (person names, multi-valued text,
//! time and datetime ranges, values taken from `meta_json`), exposed as SQL functions.

use dicom_core::VR;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::Connection;
use serde_json::Value;

/// Most values accepted in one list (UID list, CS list, ...).
pub(crate) const MAX_VALUES: usize = 1000;

/// A validated matching key value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher {
    /// Any of these values, case-sensitive; `*`/`?` are wildcards (never in UIDs).
    Text(Vec<String>),
    /// Any of these person-name patterns, case-insensitive, per component group.
    Pn(Vec<String>),
    /// Range on normalized DA/TM/DT strings (see [`normalize`]); `None` is open.
    Range {
        vr: VR,
        lo: Option<String>,
        hi: Option<String>,
    },
    /// Any of these numbers.
    Num(Vec<f64>),
}

impl Matcher {
    /// The same condition in C-FIND syntax (value lists joined by '\\', ranges as `lo-hi`).
    pub(crate) fn to_dimse(&self) -> String {
        match self {
            Matcher::Text(v) | Matcher::Pn(v) => v.join("\\"),
            Matcher::Range { vr, lo, hi } => {
                let cut = |s: &Option<String>| {
                    s.as_deref()
                        .map(|v| dimse_bound(*vr, v))
                        .unwrap_or_default()
                };
                let (lo, hi) = (cut(lo), cut(hi));
                if lo == hi {
                    lo
                } else {
                    format!("{lo}-{hi}")
                }
            }
            Matcher::Num(v) => v
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("\\"),
        }
    }
}

/// A normalized range bound as a DICOM value (times without padding fractions).
fn dimse_bound(vr: VR, v: &str) -> String {
    match vr {
        VR::TM => v.split('.').next().unwrap_or(v).to_string(),
        VR::DT => v.chars().take(14).collect(),
        _ => v.to_string(),
    }
}

/// Rejects value representations that cannot be matched.
pub(crate) fn check_vr(vr: VR) -> Result<(), &'static str> {
    match vr {
        VR::SQ => Err("sequence matching is not supported"),
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN | VR::AT => {
            Err("matching on this value representation is not supported")
        }
        _ => Ok(()),
    }
}

/// Parses a non-NUL query value for an attribute of this VR. `Ok(None)` is universal
/// matching (empty value, or `*`). `Err` is the reason the value is invalid.
pub(crate) fn parse_matcher(vr: VR, value: &str) -> Result<Option<Matcher>, String> {
    if value.is_empty() || value == "*" {
        return Ok(None);
    }
    match vr {
        VR::DA | VR::TM | VR::DT => parse_range(vr, value).map(Some),
        VR::UI => parse_uids(value),
        VR::PN => list(value, &['\\']).map(|v| v.map(Matcher::Pn)),
        VR::IS | VR::US | VR::SS | VR::UL | VR::SL | VR::SV | VR::UV => parse_nums(vr, value, true),
        VR::DS | VR::FL | VR::FD => parse_nums(vr, value, false),
        VR::CS => list(value, &['\\', ',']).map(|v| v.map(Matcher::Text)),
        VR::LT | VR::ST | VR::UT | VR::UR => Ok(Some(Matcher::Text(vec![value.to_owned()]))),
        _ => list(value, &['\\']).map(|v| v.map(Matcher::Text)),
    }
}

/// Splits a value list, dropping empty items; `None` when it reduces to universal matching.
fn list(value: &str, seps: &[char]) -> Result<Option<Vec<String>>, String> {
    let items: Vec<String> = value
        .split(seps)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if items.len() > MAX_VALUES {
        return Err(format!("more than {MAX_VALUES} values in the list"));
    }
    if items.is_empty() || items.iter().any(|s| s == "*") {
        return Ok(None);
    }
    Ok(Some(items))
}

fn parse_uids(value: &str) -> Result<Option<Matcher>, String> {
    let Some(uids) = list(value, &['\\', ','])? else {
        return Err("'*' is not a UID: wildcards are not allowed in UIDs".into());
    };
    for uid in &uids {
        check_uid(uid)?;
    }
    Ok(Some(Matcher::Text(uids)))
}

/// Checks the syntax of a UID (PS3.5 §9): digits and dots, at most 64 characters.
pub(crate) fn check_uid(uid: &str) -> Result<(), String> {
    if uid.len() > 64 {
        return Err(format!("UID '{uid}' is longer than 64 characters"));
    }
    if !uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "'{uid}' is not a UID: only digits and '.' are allowed (wildcards are not)"
        ));
    }
    if uid.split('.').any(str::is_empty) {
        return Err(format!("'{uid}' is not a UID: it has an empty component"));
    }
    Ok(())
}

fn parse_nums(vr: VR, value: &str, integer: bool) -> Result<Option<Matcher>, String> {
    let Some(items) = list(value, &['\\'])? else {
        return Ok(None);
    };
    let parse = |s: &str| -> Option<f64> {
        let s = s.trim();
        if integer {
            s.parse::<i64>().ok().map(|n| n as f64)
        } else {
            s.parse::<f64>().ok().filter(|n| n.is_finite())
        }
    };
    let kind = if integer { "an integer" } else { "a number" };
    let nums = items
        .iter()
        .map(|s| {
            parse(s).ok_or_else(|| {
                format!(
                    "'{s}' is not {kind} ({} values allow no wildcards)",
                    vr.to_string()
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Matcher::Num(nums)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    Low,
    High,
}

fn format_of(vr: VR) -> &'static str {
    match vr {
        VR::DA => "YYYYMMDD",
        VR::TM => "HH[MM[SS[.FFFFFF]]]",
        _ => "YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][+/-ZZXX]",
    }
}

fn parse_range(vr: VR, value: &str) -> Result<Matcher, String> {
    let name = vr.to_string();
    if value.contains(['*', '?']) {
        return Err(format!("wildcards are not allowed in {name} values"));
    }
    if value.contains('\\') {
        return Err(format!(
            "{name} matching takes one value or one range (from-to, -to or from-), not a list"
        ));
    }
    let (lo, hi) = split_range(vr, value)?;
    let norm = |part: Option<&str>, bound| -> Result<Option<String>, String> {
        part.map(|p| {
            normalize(vr, p, bound)
                .ok_or_else(|| format!("'{p}' is not a valid {name} value ({})", format_of(vr)))
        })
        .transpose()
    };
    let (lo, hi) = (norm(lo, Bound::Low)?, norm(hi, Bound::High)?);
    if lo.is_none() && hi.is_none() {
        return Err("a range needs at least one bound".into());
    }
    if let (Some(l), Some(h)) = (&lo, &hi) {
        if l > h {
            return Err("the start of the range is after its end".into());
        }
    }
    Ok(Matcher::Range { vr, lo, hi })
}

/// Splits `from-to`, `-to`, `from-` or a single value (both bounds the same value).
fn split_range(vr: VR, value: &str) -> Result<(Option<&str>, Option<&str>), String> {
    if vr == VR::DT {
        // A '-' after the hour is a UTC offset of a single value, not a range.
        let single = value.rfind('-').is_none_or(|p| p >= 10);
        if single && normalize(vr, value, Bound::Low).is_some() {
            return Ok((Some(value), Some(value)));
        }
        let valid = |s: &str| s.is_empty() || normalize(vr, s, Bound::Low).is_some();
        for (pos, _) in value.match_indices('-') {
            let (a, b) = (&value[..pos], &value[pos + 1..]);
            if valid(a) && valid(b) {
                return Ok((some(a), some(b)));
            }
        }
        return Err(format!(
            "'{value}' is neither a DT value nor a DT range ({})",
            format_of(vr)
        ));
    }
    match value.split_once('-') {
        None => Ok((Some(value), Some(value))),
        Some((_, b)) if b.contains('-') => Err("a range has exactly one '-'".into()),
        Some((a, b)) => Ok((some(a), some(b))),
    }
}

fn some(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

fn in_range(s: &str, lo: u32, hi: u32) -> bool {
    s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n))
}

/// Normalizes a DA, TM or DT value to a fixed-width string that sorts chronologically,
/// filling missing trailing parts with their lowest (`Low`) or highest (`High`) value.
/// DT UTC offsets are dropped (values are compared as local times). `None` if malformed.
pub(crate) fn normalize(vr: VR, v: &str, bound: Bound) -> Option<String> {
    match vr {
        VR::DA => (v.len() == 8
            && all_digits(v)
            && in_range(&v[4..6], 1, 12)
            && in_range(&v[6..8], 1, 31))
        .then(|| v.to_owned()),
        VR::TM => norm_time(v, bound),
        VR::DT => norm_datetime(v, bound),
        _ => None,
    }
}

/// Pads `part` (a prefix of a fixed-width field) with `fill` if it is missing.
fn field<'a>(s: &'a str, range: std::ops::Range<usize>, fill: &'a str) -> &'a str {
    s.get(range).unwrap_or(fill)
}

fn norm_fraction(frac: Option<&str>, bound: Bound) -> Option<String> {
    let pad = if bound == Bound::Low { '0' } else { '9' };
    match frac {
        None => Some(std::iter::repeat_n(pad, 6).collect()),
        Some(f) if (1..=6).contains(&f.len()) && all_digits(f) => {
            Some(f.chars().chain(std::iter::repeat(pad)).take(6).collect())
        }
        Some(_) => None,
    }
}

fn norm_time(v: &str, bound: Bound) -> Option<String> {
    let (main, frac) = match v.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (v, None),
    };
    if ![2, 4, 6].contains(&main.len()) || !all_digits(main) || (frac.is_some() && main.len() != 6)
    {
        return None;
    }
    let max = if bound == Bound::Low { "00" } else { "59" };
    let (hh, mm, ss) = (&main[0..2], field(main, 2..4, max), field(main, 4..6, max));
    if !(in_range(hh, 0, 23) && in_range(mm, 0, 59) && in_range(ss, 0, 60)) {
        return None;
    }
    Some(format!("{hh}{mm}{ss}.{}", norm_fraction(frac, bound)?))
}

fn norm_datetime(v: &str, bound: Bound) -> Option<String> {
    let base = match v.rfind(['+', '-']) {
        Some(p) if v.len() - p == 5 && all_digits(&v[p + 1..]) => &v[..p],
        Some(_) => return None,
        None => v,
    };
    let (main, frac) = match base.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (base, None),
    };
    if ![4, 6, 8, 10, 12, 14].contains(&main.len())
        || !all_digits(main)
        || (frac.is_some() && main.len() != 14)
    {
        return None;
    }
    let low = bound == Bound::Low;
    let (month, day, hour, minsec) = if low {
        ("01", "01", "00", "00")
    } else {
        ("12", "31", "23", "59")
    };
    let mo = field(main, 4..6, month);
    let dd = field(main, 6..8, day);
    let hh = field(main, 8..10, hour);
    let mi = field(main, 10..12, minsec);
    let ss = field(main, 12..14, minsec);
    let ok = in_range(mo, 1, 12)
        && in_range(dd, 1, 31)
        && in_range(hh, 0, 23)
        && in_range(mi, 0, 59)
        && in_range(ss, 0, 60);
    ok.then(|| {
        norm_fraction(frac, bound).map(|f| format!("{}{mo}{dd}{hh}{mi}{ss}.{f}", &main[0..4]))
    })
    .flatten()
}

pub(crate) fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// DICOM wildcard matching: `*` any run of characters, `?` exactly one character.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn one_matches(pattern: &str, value: &str) -> bool {
    if has_wildcard(pattern) {
        wildcard_match(pattern, value)
    } else {
        pattern == value
    }
}

/// True if any backslash-separated value matches any pattern (case-sensitive).
pub(crate) fn text_match(value: &str, patterns: &[String]) -> bool {
    value
        .split('\\')
        .any(|v| patterns.iter().any(|p| one_matches(p, v)))
}

/// Lowercases and drops trailing empty components ('^') of each '='-separated group.
fn fold_groups(name: &str) -> Vec<String> {
    name.to_lowercase()
        .split('=')
        .map(|g| g.trim_end_matches('^').trim().to_owned())
        .collect()
}

/// Person-name matching, case-insensitive. A pattern matches a name if it matches the
/// whole value or any one component group (alphabetic, ideographic, phonetic); a pattern
/// with '=' is matched group by group (empty pattern groups match anything). With `fuzzy`,
/// a pattern also matches when it is a prefix of any single name component, or, if it has
/// '^', when each of its components is a prefix of the same component of one group.
pub(crate) fn pn_match(value: &str, patterns: &[String], fuzzy: bool) -> bool {
    value.split('\\').any(|name| {
        let groups = fold_groups(name);
        patterns.iter().any(|p| {
            let pg = fold_groups(p);
            pn_exact(name, &groups, p, &pg) || (fuzzy && pg.len() == 1 && pn_fuzzy(&groups, &pg[0]))
        })
    })
}

fn pn_exact(name: &str, groups: &[String], pattern: &str, pgroups: &[String]) -> bool {
    if one_matches(&pattern.to_lowercase(), &name.to_lowercase()) {
        return true;
    }
    if pgroups.len() == 1 {
        return groups.iter().any(|g| one_matches(&pgroups[0], g));
    }
    pgroups.iter().any(|g| !g.is_empty())
        && pgroups.iter().enumerate().all(|(i, pg)| {
            pg.is_empty() || one_matches(pg, groups.get(i).map_or("", String::as_str))
        })
}

fn pn_fuzzy(groups: &[String], pattern: &str) -> bool {
    let prefix = |p: &str, c: &str| !p.is_empty() && wildcard_match(&format!("{p}*"), c);
    let pcomps: Vec<&str> = pattern.split('^').map(str::trim).collect();
    groups.iter().any(|g| {
        let comps: Vec<&str> = g.split('^').map(str::trim).collect();
        if pcomps.len() == 1 {
            comps.iter().any(|c| prefix(pcomps[0], c))
        } else {
            pcomps.iter().any(|p| !p.is_empty())
                && pcomps
                    .iter()
                    .enumerate()
                    .all(|(i, p)| p.is_empty() || prefix(p, comps.get(i).unwrap_or(&"")))
        }
    })
}

/// True if any backslash-separated stored value lies in the (normalized) range.
pub(crate) fn range_match(value: &str, vr: VR, lo: Option<&str>, hi: Option<&str>) -> bool {
    value.split('\\').any(|v| {
        let v = if vr == VR::TM {
            v.trim().replace(':', "")
        } else {
            v.trim().to_owned()
        };
        normalize(vr, &v, Bound::Low).is_some_and(|n| {
            lo.is_none_or(|l| n.as_str() >= l) && hi.is_none_or(|h| n.as_str() <= h)
        })
    })
}

/// True if any backslash-separated stored value equals any of the numbers.
pub(crate) fn num_match(value: &str, nums: &[f64]) -> bool {
    value
        .split('\\')
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .any(|v| nums.contains(&v))
}

/// The values of a DICOM JSON element as index-column text: values joined by '\', person
/// names as '='-joined groups, numbers as text. `None` if `element` is not an object.
pub(crate) fn json_values(element: &str) -> Option<String> {
    let elem: Value = serde_json::from_str(element).ok()?;
    let values = elem.as_object()?.get("Value").and_then(Value::as_array);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o)
            if !o.contains_key("vr") && o.keys().all(|k| PN_GROUPS.contains(&k.as_str())) =>
        {
            let group = |k| o.get(k).and_then(Value::as_str).unwrap_or("");
            PN_GROUPS
                .map(group)
                .join("=")
                .trim_end_matches('=')
                .to_owned()
        }
        _ => String::new(),
    };
    Some(values.map_or_else(String::new, |vs| {
        vs.iter().map(text).collect::<Vec<_>>().join("\\")
    }))
}

pub(crate) const PN_GROUPS: [&str; 3] = ["Alphabetic", "Ideographic", "Phonetic"];

fn strings_from(ctx: &Context<'_>, first: usize) -> rusqlite::Result<Vec<String>> {
    (first..ctx.len()).map(|i| ctx.get::<String>(i)).collect()
}

/// Registers `qido_values`, `qido_text_match`, `qido_pn_match`, `qido_range_match` and
/// `qido_num_match` on the connection.
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("qido_values", 1, flags, |ctx| {
        Ok(ctx.get::<Option<String>>(0)?.and_then(|s| json_values(&s)))
    })?;
    conn.create_scalar_function("qido_text_match", -1, flags, |ctx| {
        let value = ctx.get::<Option<String>>(0)?;
        Ok(value.is_some_and(|v| strings_from(ctx, 1).is_ok_and(|p| text_match(&v, &p))))
    })?;
    conn.create_scalar_function("qido_pn_match", -1, flags, |ctx| {
        let (value, fuzzy) = (ctx.get::<Option<String>>(0)?, ctx.get::<bool>(1)?);
        let patterns = strings_from(ctx, 2)?;
        Ok(value.is_some_and(|v| pn_match(&v, &patterns, fuzzy)))
    })?;
    conn.create_scalar_function("qido_range_match", 4, flags, |ctx| {
        let value = ctx.get::<Option<String>>(0)?;
        let vr = ctx.get::<String>(1)?.parse::<VR>().unwrap_or(VR::UN);
        let (lo, hi) = (ctx.get::<Option<String>>(2)?, ctx.get::<Option<String>>(3)?);
        Ok(value.is_some_and(|v| range_match(&v, vr, lo.as_deref(), hi.as_deref())))
    })?;
    conn.create_scalar_function("qido_num_match", -1, flags, |ctx| {
        let value = ctx.get::<Option<String>>(0)?;
        let nums = (1..ctx.len())
            .map(|i| ctx.get::<f64>(i))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(value.is_some_and(|v| num_match(&v, &nums)))
    })?;
    Ok(())
}
