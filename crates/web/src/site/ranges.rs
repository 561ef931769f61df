//! `Range: bytes=…` requests of one range (RFC 9110 §14), enough for resumed
//! and partial downloads; several ranges in one request are answered with the
//! whole file, which the RFC allows.

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Requested {
    /// No usable range: the whole body.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range outside the body: 416.
    Unsatisfiable,
}

/// Interprets the `Range` header `value` for a body of `size` bytes.
pub(crate) fn requested(value: Option<&str>, size: u64) -> Requested {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Requested::Whole;
    };
    if spec.contains(',') {
        return Requested::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Requested::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // `bytes=-N`: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => Requested::Unsatisfiable,
            Some(n) if size > 0 => Requested::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            Some(_) => Requested::Unsatisfiable,
            None => Requested::Whole,
        },
        // `bytes=N-` or `bytes=N-M`.
        (false, _) => {
            let Some(start) = parse(first) else {
                return Requested::Whole;
            };
            let end = if last.is_empty() {
                Some(u64::MAX)
            } else {
                parse(last)
            };
            match end {
                None => Requested::Whole,
                Some(end) if end < start => Requested::Whole,
                Some(_) if start >= size => Requested::Unsatisfiable,
                Some(end) => Requested::Part {
                    start,
                    end: end.min(size - 1),
                },
            }
        }
        (true, true) => Requested::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        let part = |start, end| Requested::Part { start, end };
        assert_eq!(requested(None, 100), Requested::Whole);
        assert_eq!(requested(Some("bytes=0-9"), 100), part(0, 9));
        assert_eq!(requested(Some("bytes=90-"), 100), part(90, 99));
        assert_eq!(requested(Some("bytes=90-500"), 100), part(90, 99));
        assert_eq!(requested(Some("bytes=-10"), 100), part(90, 99));
        assert_eq!(requested(Some("bytes=-500"), 100), part(0, 99));
        assert_eq!(requested(Some("bytes=100-"), 100), Requested::Unsatisfiable);
        assert_eq!(requested(Some("bytes=-0"), 100), Requested::Unsatisfiable);
        assert_eq!(requested(Some("bytes=0-"), 0), Requested::Unsatisfiable);
        for ignored in [
            "items=0-9",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=0-1,5-6",
            "bytes=-",
        ] {
            assert_eq!(requested(Some(ignored), 100), Requested::Whole, "{ignored}");
        }
    }
}
