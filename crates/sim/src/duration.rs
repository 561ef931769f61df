//! Durations on the command line (`30s`, `500ms`, `2m`, `1h`, or plain seconds),
//! parsed here so the simulator needs no extra crate for it.

use std::time::Duration;

/// The longest duration accepted: a run must end, and a day is plenty.
pub const MAX: Duration = Duration::from_secs(24 * 3600);

/// Parses `<number><unit>` with unit `ms`, `s`, `m` or `h` (seconds without a
/// unit); the number may have a fraction. Refuses zero, negative and over [`MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?} must be more than zero"));
    }
    if seconds > MAX.as_secs_f64() {
        return Err(format!("{text:?} is longer than 24h"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refusals() {
        for bad in ["", "s", "0s", "-1s", "10x", "25h", "1..2s"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
