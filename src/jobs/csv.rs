//! The referrals CSV: one prefetch job per line, as a referral system exports them.
//!
//! ```text
//! patient_id,issuer_or_upstream,due,accession_number,modality
//! JP-0001,hospital-a,2026-12-01T09:00,,CT
//! 12345,HOSP-A-MRN,2026-12-02T14:30+09:00,ACC-778,MR\CT
//! ```
//!
//! Columns, in this order unless a header line names them (a first line starting with
//! `patient_id` is a header; its names may come in any order, unknown names are an error):
//! `patient_id` (required), `issuer_or_upstream` (the name of an `[[upstream]]` restricts the
//! search to it; anything else is the Issuer of Patient ID; `upstream` and `issuer` columns
//! may also be given separately), `due` (see `JobSpec::due`), `accession_number` and
//! `modality` (`\`, `/` or space separated), both optional, `referred_to` (optional: the
//! `[[facility]]` the patient is referred to; the job refers the patient to it), and
//! `priority` (an integer; by header only).
//! Fields may be quoted with `"` (`""` inside quotes is a quote). Blank lines and lines
//! starting with `#` are skipped.

use super::model::JobSpec;

/// A line that cannot be read, with its number (1-based).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

const DEFAULT_COLUMNS: [&str; 6] = [
    "patient_id",
    "issuer_or_upstream",
    "due",
    "accession_number",
    "modality",
    "referred_to",
];
const KNOWN: [&str; 9] = [
    "patient_id",
    "issuer_or_upstream",
    "issuer",
    "upstream",
    "due",
    "accession_number",
    "modality",
    "priority",
    "referred_to",
];

/// Parse referrals into job specifications; `upstreams` are the configured upstream names.
pub fn parse(text: &str, upstreams: &[String]) -> Result<Vec<(usize, JobSpec)>, CsvError> {
    let mut columns: Vec<String> = DEFAULT_COLUMNS.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields = split(trimmed).map_err(|message| CsvError { line, message })?;
        if first && fields[0].trim().eq_ignore_ascii_case("patient_id") {
            columns = header(&fields).map_err(|message| CsvError { line, message })?;
            first = false;
            continue;
        }
        first = false;
        let spec =
            row(&columns, &fields, upstreams).map_err(|message| CsvError { line, message })?;
        out.push((line, spec));
    }
    Ok(out)
}

fn header(fields: &[String]) -> Result<Vec<String>, String> {
    let names: Vec<String> = fields
        .iter()
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    if let Some(bad) = names.iter().find(|n| !KNOWN.contains(&n.as_str())) {
        return Err(format!(
            "unknown column {bad:?} (known: {})",
            KNOWN.join(", ")
        ));
    }
    Ok(names)
}

fn row(columns: &[String], fields: &[String], upstreams: &[String]) -> Result<JobSpec, String> {
    if fields.len() > columns.len() {
        return Err(format!(
            "{} fields, but only {} columns",
            fields.len(),
            columns.len()
        ));
    }
    let mut spec = JobSpec::default();
    for (name, value) in columns.iter().zip(fields) {
        let v = value.trim();
        if v.is_empty() {
            continue;
        }
        match name.as_str() {
            "patient_id" => spec.patient_id = Some(v.into()),
            "issuer_or_upstream" if upstreams.iter().any(|u| u == v) => {
                spec.upstreams = vec![v.into()]
            }
            "issuer_or_upstream" | "issuer" => spec.issuer = Some(v.into()),
            "upstream" => spec.upstreams = vec![v.into()],
            "due" => spec.due = Some(v.into()),
            "referred_to" => spec.referred_to = Some(v.into()),
            "accession_number" => spec.accession_number = Some(v.into()),
            "modality" => {
                spec.modalities = v
                    .split(['\\', '/', ' '])
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "priority" => {
                spec.priority = v
                    .parse()
                    .map_err(|_| format!("priority {v:?} is not an integer"))?
            }
            _ => {}
        }
    }
    if spec.patient_id.is_none() {
        return Err("patient_id is empty".into());
    }
    Ok(spec)
}

/// Split one line into fields (RFC 4180 quoting, within one line).
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrals_with_and_without_header() {
        let ups = vec!["hospital-a".to_string()];
        let text = "# referrals for December\n\
                    JP-0001,hospital-a,2026-12-01T09:00,,CT\n\
                    \n\
                    12345,MRN-A,2026-12-02T14:30+09:00,ACC-778,MR\\CT\n";
        let jobs = parse(text, &ups).unwrap();
        assert_eq!(jobs.len(), 2);
        let (line, a) = &jobs[0];
        assert_eq!(*line, 2);
        assert_eq!(a.patient_id.as_deref(), Some("JP-0001"));
        assert_eq!(a.upstreams, vec!["hospital-a"]);
        assert_eq!(a.issuer, None);
        assert_eq!(a.modalities, vec!["CT"]);
        let (_, b) = &jobs[1];
        assert_eq!(b.issuer.as_deref(), Some("MRN-A"));
        assert_eq!(b.accession_number.as_deref(), Some("ACC-778"));
        assert_eq!(b.modalities, vec!["MR", "CT"]);

        let text = "patient_id,due,priority,upstream\n\"P, 1\",2026-12-01,3,hospital-a\n";
        let jobs = parse(text, &ups).unwrap();
        assert_eq!(jobs[0].1.patient_id.as_deref(), Some("P, 1"));
        assert_eq!(jobs[0].1.priority, 3);
        assert_eq!(jobs[0].1.due.as_deref(), Some("2026-12-01"));
    }

    #[test]
    fn a_sixth_column_is_the_facility_referred_to() {
        let jobs = parse(
            "JP-1,hospital-a,,,CT,clinic-a\n",
            &["hospital-a".to_string()],
        )
        .unwrap();
        assert_eq!(jobs[0].1.referred_to.as_deref(), Some("clinic-a"));
    }

    #[test]
    fn a_referred_to_column_names_the_facility() {
        let text =
            "patient_id,upstream,due,referred_to\nJP-1,hospital-a,2026-12-01T09:00,clinic-a\n";
        let jobs = parse(text, &["hospital-a".to_string()]).unwrap();
        assert_eq!(jobs[0].1.referred_to.as_deref(), Some("clinic-a"));
        assert_eq!(jobs[0].1.upstreams, vec!["hospital-a".to_string()]);
    }

    #[test]
    fn errors_name_the_line() {
        let ups = vec![];
        assert_eq!(parse("a,b\n,x\n", &ups).unwrap_err().line, 2);
        let e = parse("patient_id,colour\n", &ups).unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
        assert!(parse("\"P,1\n", &ups).is_err());
        assert!(parse("P,a,b,c,d,e,f\n", &ups)
            .unwrap_err()
            .message
            .contains("7 fields"));
    }
}
