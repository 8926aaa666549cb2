//! The calendar, pure: pubTimes (`YYYYMMDDTHHMMSS.frac`), HTTP dates (IMF-fixdate),
//! RFC 3339. Proleptic Gregorian, UTC, no leap seconds; no clock is read here.

/// Seconds since the Unix epoch of a pubTime (`YYYYMMDD[T]HHMMSS[.frac][Z]`, UTC) or of
/// an RFC 3339 time (WIS2's `pubtime`).
pub fn parse_time(s: &str) -> Option<f64> {
    if s.as_bytes().get(4) == Some(&b'-') {
        return parse_rfc3339(s);
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    let main = main.as_bytes();
    let (date, time) = match main.len() {
        15 if main[8] == b'T' => (&main[..8], &main[9..]),
        14 => (&main[..8], &main[8..]),
        _ => return None,
    };
    if !date.iter().chain(time).all(u8::is_ascii_digit) {
        return None;
    }
    let num = |b: &[u8]| b.iter().fold(0i64, |a, d| a * 10 + i64::from(d - b'0'));
    let (y, mo, d) = (num(&date[..4]), num(&date[4..6]), num(&date[6..8]));
    let (h, mi, se) = (num(&time[..2]), num(&time[2..4]), num(&time[4..6]));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut secs = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se) as f64;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 12 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        secs += num(f.as_bytes()) as f64 / 10f64.powi(f.len() as i32);
    }
    Some(secs)
}

/// Seconds since the Unix epoch of an RFC 3339 date-time:
/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)` (`t` and `z` allowed, as the RFC says).
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let (head, zone) = split_zone(s)?;
    let b = head.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    // the same digits in pubTime order, read by the one parser
    let mut compact = String::with_capacity(24);
    for (i, c) in head.char_indices() {
        match i {
            4 | 7 | 13 | 16 => {}
            10 => compact.push('T'),
            _ => compact.push(c),
        }
    }
    Some(parse_time(&compact)? - f64::from(zone))
}

/// Splits an RFC 3339 time into its local part and its offset east of UTC in seconds.
fn split_zone(s: &str) -> Option<(&str, i32)> {
    if let Some(h) = s.strip_suffix(['Z', 'z']) {
        return Some((h, 0));
    }
    let at = s.len().checked_sub(6)?;
    let (head, zone) = s.split_at_checked(at)?;
    let z = zone.as_bytes();
    let sign = match z[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if z[3] != b':' || !z[1..3].iter().chain(&z[4..]).all(u8::is_ascii_digit) {
        return None;
    }
    let n = |d: &[u8]| i32::from(d[0] - b'0') * 10 + i32::from(d[1] - b'0');
    Some((head, sign * (n(&z[1..3]) * 3600 + n(&z[4..6]) * 60)))
}

/// A pubTime (`YYYYMMDD[T]HHMMSS[.frac][Z]`) as RFC 3339 UTC, its fraction digits kept:
/// `20190130T033822.95188` -> `2019-01-30T03:38:22.95188Z`.
pub fn pub_time_to_rfc3339(p: &str) -> Option<String> {
    parse_time(p)?;
    if p.as_bytes().get(4) == Some(&b'-') {
        return Some(p.to_string());
    }
    let p = p.strip_suffix('Z').unwrap_or(p);
    let (main, frac) = p.split_once('.').map_or((p, None), |(m, f)| (m, Some(f)));
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let d = |r: std::ops::Range<usize>| &digits[r];
    let mut out = format!(
        "{}-{}-{}T{}:{}:{}",
        d(0..4),
        d(4..6),
        d(6..8),
        d(8..10),
        d(10..12),
        d(12..14)
    );
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out.push('Z');
    Some(out)
}

/// An RFC 3339 time as a v03 pubTime (`YYYYMMDDTHHMMSS[.frac]`), its fraction digits kept
/// when it is UTC; another offset is converted (to the millisecond).
pub fn rfc3339_to_pub_time(r: &str) -> Option<String> {
    let t = parse_rfc3339(r)?;
    let (head, zone) = split_zone(r)?;
    if zone != 0 {
        let mut out = String::new();
        format_time(&mut out, t);
        return Some(out);
    }
    let mut out = String::with_capacity(24);
    for (i, c) in head.char_indices() {
        match i {
            4 | 7 | 13 | 16 => {}
            10 => out.push('T'),
            _ => out.push(c),
        }
    }
    Some(out)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Civil date of a day number (inverse of `days_from_civil`).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
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

/// Formats epoch seconds as a v03 pubTime, `YYYYMMDDTHHMMSS.mmm`.
pub fn format_time(out: &mut String, epoch: f64) {
    use std::fmt::Write as _;
    let secs = epoch.floor() as i64;
    let millis = (((epoch - secs as f64) * 1000.0).round() as i64).min(999);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let t = secs.rem_euclid(86400);
    let _ = write!(
        out,
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{millis:03}",
        t / 3600,
        t / 60 % 60,
        t % 60
    );
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An HTTP date (IMF-fixdate) of epoch seconds.
pub fn http_date(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let t = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Epoch seconds of an IMF-fixdate; other (obsolete) forms are not read.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    let [_, d, mon, y, hms, "GMT"] = f.as_slice() else {
        return None;
    };
    let m = MONTHS.iter().position(|x| x == mon)? as i64 + 1;
    // every field in its range (a header is anybody's input: `h * 3600` of a huge hour
    // overflowed), and the day one the month has: an impossible date is no date
    let field = |s: &str, max: i64| s.parse::<i64>().ok().filter(|v| (0..=max).contains(v));
    let (d, y) = (field(d, 31)?, field(y, 9999)?);
    let t: Vec<&str> = hms.split(':').collect();
    let [h, mi, se] = t.as_slice() else {
        return None;
    };
    let (h, mi, se) = (field(h, 23)?, field(mi, 59)?, field(se, 60)?);
    let days = days_from_civil(y, m, d);
    if d == 0 || civil_from_days(days) != (y, m, d) {
        return None;
    }
    Some(days * 86400 + h * 3600 + mi * 60 + se)
}

/// RFC 3339 (UTC, whole seconds) of epoch seconds.
pub fn rfc3339(t: f64) -> String {
    let secs = t.floor() as i64;
    let (y, m, d) = crate::core::time::civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pub_times() {
        assert_eq!(parse_time("19700101T000000"), Some(0.0));
        assert_eq!(parse_time("19700101000001"), Some(1.0));
        let t = parse_time("20190130T033822.951880").unwrap();
        assert!((t - 1548819502.95188).abs() < 1e-6);
        assert_eq!(parse_time("20190130T033822Z"), parse_time("20190130033822"));
        assert_eq!(parse_time("2019013T033822"), None);
        assert_eq!(parse_time("20191330T033822"), None);
        assert_eq!(parse_time("20190130T033822."), None);
        let mut s = String::new();
        format_time(&mut s, 1548819502.951);
        assert_eq!(s, "20190130T033822.951");
    }

    #[test]
    fn impossible_http_dates_are_no_dates() {
        for s in [
            "Sun, 06 Nov 1994 99999999999999999:48:37 GMT",
            "Sun, 06 Nov 99999999999999999 08:49:37 GMT",
            "Sun, 99999999999999999 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 -1:00:00 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37:01 GMT",
        ] {
            assert_eq!(parse_http_date(s), None, "{s}");
        }
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(951_782_400)
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(784111777.9), "1994-11-06T08:49:37Z");
        assert_eq!(parse_time("1994-11-06T08:49:37Z"), Some(784111777.0));
        let t = parse_time("2022-03-20T04:50:18.314854383Z").unwrap();
        assert!((t - 1_647_751_818.314_854).abs() < 1e-5);
        assert_eq!(
            parse_rfc3339("1994-11-06T10:49:37+02:00"),
            Some(784111777.0)
        );
        assert_eq!(
            parse_rfc3339("1994-11-06T03:49:37-05:00"),
            Some(784111777.0)
        );
        for bad in [
            "1994-11-06T08:49:37",
            "1994-11-06 08:49",
            "1994-13-06T08:49:37Z",
            "1994-11-06T08:49:37+2:00",
            "",
            "Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        assert_eq!(
            pub_time_to_rfc3339("20190130T033822.951880").as_deref(),
            Some("2019-01-30T03:38:22.951880Z")
        );
        assert_eq!(
            pub_time_to_rfc3339("20190130033822").as_deref(),
            Some("2019-01-30T03:38:22Z")
        );
        assert_eq!(pub_time_to_rfc3339("2019013"), None);
        assert_eq!(
            rfc3339_to_pub_time("2019-01-30T03:38:22.951880Z").as_deref(),
            Some("20190130T033822.951880")
        );
        assert_eq!(
            rfc3339_to_pub_time("2019-01-30T04:38:22+01:00").as_deref(),
            Some("20190130T033822.000")
        );
    }
}
