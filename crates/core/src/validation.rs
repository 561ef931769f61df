//! The error shared by every admin-facing validation: it names the offending field.

/// A value refused by validation. `field` is the column/flag name the user typed,
/// so the CLI and the admin API can tell exactly what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct FieldError {
    /// Column name, e.g. `store_sample_submit`.
    pub field: &'static str,
    /// Human-readable reason.
    pub message: String,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Checks that `value` is a percentage (0–100).
pub fn check_percent(field: &'static str, value: Option<i16>) -> Result<(), FieldError> {
    match value {
        Some(v) if !(0..=100).contains(&v) => Err(FieldError::new(
            field,
            format!("{v} is not a percentage between 0 and 100"),
        )),
        _ => Ok(()),
    }
}

/// Checks that an optional integer is not negative.
pub fn check_non_negative(field: &'static str, value: Option<i64>) -> Result<(), FieldError> {
    match value {
        Some(v) if v < 0 => Err(FieldError::new(field, format!("{v} must not be negative"))),
        _ => Ok(()),
    }
}

/// Checks the length of an optional text column.
pub fn check_len(field: &'static str, value: Option<&str>, max: usize) -> Result<(), FieldError> {
    match value {
        Some(v) if v.chars().count() > max => Err(FieldError::new(
            field,
            format!("longer than {max} characters"),
        )),
        _ => Ok(()),
    }
}
