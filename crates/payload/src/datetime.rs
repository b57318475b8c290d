//! Payload datetimes: the strings a datetime range compares and a datetime index holds.
//!
//! Accepted forms are the ones Qdrant's core reads (and `qdrant_client.local.datetime_utils`
//! mirrors): `YYYY-MM-DD`, then optionally `T` (or whitespace) and `HH:MM`, or `HH:MM:SS` with
//! an optional fraction and an optional offset (`Z`, `±HH:MM`, `±HHMM`, `±HH`, ` UTC`), the
//! offset optionally after whitespace. Month, day, hour, minute and second take one or two
//! digits. A time without an offset is UTC. Fractions keep microseconds and drop the rest,
//! which is the precision Qdrant's datetime index compares at.

/// Microseconds since 1970-01-01T00:00:00Z, or `None` when `s` is not a datetime.
pub fn parse_datetime_micros(s: &str) -> Option<i64> {
    let normalized = normalize(s);
    if let Some(t) = parse_normalized(&normalized) {
        return Some(t);
    }
    // An offset of hours only (`+01`) is read as `+01:00`; only a string that ends that way is
    // retried, so a truncated time (`2024-06-15 12`) is not completed into a valid one.
    let tail = normalized.as_bytes();
    if tail.len() >= 3 {
        let t = &tail[tail.len() - 3..];
        if (t[0] == b'+' || t[0] == b'-') && t[1].is_ascii_digit() && t[2].is_ascii_digit() {
            return parse_normalized(&format!("{normalized}:00"));
        }
    }
    None
}

/// The leniencies of Qdrant's parser rewritten into the strict grammar: leading whitespace, a
/// lowercase `z`, ` UTC`, and fractions longer than microseconds.
fn normalize(s: &str) -> String {
    let s = s.trim_start();
    let mut out = if let Some(head) = s.strip_suffix(" UTC") {
        format!("{head}+00:00")
    } else if let Some(head) = s.strip_suffix('z') {
        format!("{head}Z")
    } else {
        s.to_string()
    };
    if let Some(dot) = out.find('.') {
        let digits = out[dot + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits > 6 {
            out.replace_range(dot + 7..dot + 1 + digits, "");
        }
    }
    out
}

struct Cursor<'a> {
    s: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.at == self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.s[self.at..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn eat_whitespace(&mut self) -> bool {
        let start = self.at;
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.at += c.len_utf8();
        }
        self.at > start
    }

    /// Between `min` and `max` ASCII digits, greedily, with their count.
    fn digits(&mut self, min: usize, max: usize) -> Option<(u32, usize)> {
        let bytes = &self.s.as_bytes()[self.at..];
        let n = bytes
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        let value = bytes[..n]
            .iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
        self.at += n;
        Some((value, n))
    }

    fn number(&mut self, max_value: u32) -> Option<u32> {
        self.digits(1, 2)
            .map(|(v, _)| v)
            .filter(|&v| v <= max_value)
    }
}

fn parse_normalized(s: &str) -> Option<i64> {
    let mut c = Cursor { s, at: 0 };
    let (year, _) = c.digits(4, 4)?;
    if !c.eat('-') {
        return None;
    }
    let month = c.number(12).filter(|&m| m >= 1)?;
    if !c.eat('-') {
        return None;
    }
    let day = c.number(31).filter(|&d| d >= 1)?;
    if year < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date_micros = days_from_civil(year, month, day) * 86_400_000_000;
    if c.done() {
        return Some(date_micros);
    }
    if !(c.eat('T') || c.eat('t') || c.eat_whitespace()) {
        return None;
    }
    let hour = c.number(23)?;
    if !c.eat(':') {
        return None;
    }
    let minute = c.number(59)?;
    let mut micros = date_micros + i64::from(hour) * 3_600_000_000 + i64::from(minute) * 60_000_000;
    if c.done() {
        return Some(micros);
    }
    if !c.eat(':') {
        return None;
    }
    // Seconds 60 and 61 pass the pattern but are not a valid time.
    let second = c.number(59)?;
    micros += i64::from(second) * 1_000_000;
    if c.eat('.') {
        let (fraction, n) = c.digits(1, 6)?;
        micros += i64::from(fraction) * 10i64.pow(6 - n as u32);
    }
    if c.done() {
        return Some(micros);
    }
    c.eat_whitespace();
    let offset = parse_offset(&mut c)?;
    c.done().then_some(micros - offset)
}

/// `Z` or `±HH[:]MM[[:]SS[.ffffff]]` in microseconds, strictly within a day either way, with
/// the colons used consistently.
fn parse_offset(c: &mut Cursor<'_>) -> Option<i64> {
    if c.eat('Z') {
        return Some(0);
    }
    let sign = if c.eat('+') {
        1
    } else if c.eat('-') {
        -1
    } else {
        return None;
    };
    let (hours, _) = c.digits(2, 2)?;
    let colon = c.eat(':');
    let (minutes, _) = c.digits(2, 2).filter(|&(m, _)| m <= 59)?;
    let mut total = i64::from(hours) * 3_600_000_000 + i64::from(minutes) * 60_000_000;
    let before_seconds = c.at;
    let second_colon = c.eat(':');
    match c.digits(2, 2) {
        Some((seconds, _)) if seconds <= 59 && second_colon == colon => {
            total += i64::from(seconds) * 1_000_000;
            if c.eat('.') {
                let (fraction, n) = c.digits(1, 6)?;
                total += i64::from(fraction) * 10i64.pow(6 - n as u32);
            }
        }
        Some(_) => return None,
        None => c.at = before_seconds,
    }
    (total < 86_400_000_000).then_some(sign * total)
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_datetime_micros as parse;

    const S: i64 = 1_000_000;

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(parse("1970-01-01"), Some(0));
        assert_eq!(parse("1970-01-02T00:00:00Z"), Some(86_400 * S));
        assert_eq!(parse("2000-03-01T00:00:00Z"), Some(951_868_800 * S));
        assert_eq!(parse("0001-01-01"), Some(-62_135_596_800 * S));
        assert_eq!(
            parse("9999-12-31T23:59:59.999999Z"),
            Some(253_402_300_799_999_999)
        );
    }

    #[test]
    fn every_accepted_spelling_of_one_instant() {
        let want = parse("2021-03-04T05:06:07Z").unwrap();
        for s in [
            "2021-03-04T05:06:07",
            "2021-03-04 05:06:07",
            "2021-03-04t05:06:07z",
            "  2021-03-04T05:06:07+00:00",
            "2021-03-04T06:06:07+01:00",
            "2021-03-04T06:06:07+0100",
            "2021-03-04T06:06:07+01",
            "2021-03-04T04:06:07-01",
            "2021-03-04T05:06:07 UTC",
            "2021-03-04T06:06:07 +01:00",
            "2021-3-4T5:6:7",
            "2021-03-04T05:06:07.0",
        ] {
            assert_eq!(parse(s), Some(want), "{s}");
        }
        assert_eq!(parse("2021-03-04T05:06"), Some(want - 7 * S));
    }

    #[test]
    fn fractions_keep_microseconds() {
        let base = parse("2021-01-01T00:00:00Z").unwrap();
        assert_eq!(parse("2021-01-01T00:00:00.5Z"), Some(base + 500_000));
        assert_eq!(
            parse("2021-01-01T00:00:00.123456789Z"),
            Some(base + 123_456)
        );
        assert_eq!(parse("2021-01-01T00:00:00.000001"), Some(base + 1));
    }

    #[test]
    fn invalid_strings() {
        for s in [
            "",
            "2021",
            "21-01-01",
            "2021-13-01",
            "2021-00-10",
            "2021-02-29",
            "2021-04-31",
            "0000-01-01",
            "2021-01-01T24:00:00",
            "2021-01-01T10:60",
            "2021-01-01T10:00:60",
            "2021-01-01T10",
            "2021-01-01T10:00+01",
            "2021-01-01T10:00:00+24:00",
            "2021-01-01T10:00:00+01:0030",
            "2021-01-01T10:00:00 ",
            "2021-01-01 ",
            "2021-01-01T10:00:00.Z",
            "2021-01-01T10:00:00x",
            "hello",
        ] {
            assert_eq!(parse(s), None, "{s:?}");
        }
        assert!(parse("2020-02-29").is_some());
    }
}
