//! Wall-clock time without a time-zone database: unix seconds, civil dates (proleptic
//! Gregorian), ISO 8601 parsing and formatting with a fixed UTC offset (`jobs.utc_offset`;
//! Japan has no daylight saving time), and the minute of the day for daily windows.

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    now_ms() / 1000
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Parse `2026-12-01T09:00[:00][Z|+09:00]` (a space may replace `T`; a bare date means
/// midnight). Times without an offset are in `default_offset` (seconds east of UTC).
pub fn parse_datetime(text: &str, default_offset: i32) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a time like \"2026-12-01T09:00\"");
    let t = text.trim();
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let y: i64 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    let d: u32 = d.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(bad());
    }
    let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(split);
    let offset = if zone.is_empty() {
        default_offset
    } else {
        crate::config::parse_offset(zone)?
    };
    let secs = if clock.is_empty() {
        0
    } else {
        let f: Vec<&str> = clock.split(':').collect();
        if !(2..=3).contains(&f.len()) {
            return Err(bad());
        }
        let h: i64 = f[0].parse().map_err(|_| bad())?;
        let mi: i64 = f[1].parse().map_err(|_| bad())?;
        let s: f64 = f.get(2).map_or(Ok(0.0), |s| s.parse()).map_err(|_| bad())?;
        if h > 23 || mi > 59 || !(0.0..61.0).contains(&s) {
            return Err(bad());
        }
        h * 3600 + mi * 60 + s as i64
    };
    Ok(days_from_civil(y, m, d) * 86_400 + secs - offset as i64)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `2026-12-01T09:00:00+09:00` (or `...Z` for offset 0).
pub fn format_datetime(unix: i64, offset: i32) -> String {
    let local = unix + offset as i64;
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let s = local.rem_euclid(86_400);
    let zone = if offset == 0 {
        "Z".to_string()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.abs();
        format!("{sign}{:02}:{:02}", o / 3600, (o % 3600) / 60)
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{zone}",
        s / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

/// Minutes since local midnight at `unix`.
pub fn minute_of_day(unix: i64, offset: i32) -> u32 {
    ((unix + offset as i64).rem_euclid(86_400) / 60) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_offsets() {
        let t = parse_datetime("2026-12-01T09:00", 9 * 3600).unwrap();
        assert_eq!(t, parse_datetime("2026-12-01T00:00:00Z", 0).unwrap());
        assert_eq!(format_datetime(t, 9 * 3600), "2026-12-01T09:00:00+09:00");
        assert_eq!(format_datetime(t, 0), "2026-12-01T00:00:00Z");
        assert_eq!(parse_datetime("1970-01-01", 0).unwrap(), 0);
        assert_eq!(
            parse_datetime("2024-02-29 12:30-01:00", 0).unwrap() % 86_400,
            13 * 3600 + 1800
        );
        assert!(parse_datetime("2025-02-29T00:00", 0).is_err());
        assert!(parse_datetime("tomorrow", 0).is_err());
        assert_eq!(minute_of_day(t, 9 * 3600), 9 * 60);
        for day in [-1000, 0, 19_000, 20_500] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
