//! Where the position of a report came from.

use serde::{Deserialize, Serialize};

/// Quality class of a report's position; lower codes are better.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportSource {
    /// Externally known true position.
    Fixed,
    /// Satellite fix.
    Gnss,
    /// Sensor fusion or an external service.
    Fused,
    /// Estimated by this service from a locate query.
    Query,
}

impl ReportSource {
    /// Every source, best first.
    pub const ALL: [ReportSource; 4] = [
        ReportSource::Fixed,
        ReportSource::Gnss,
        ReportSource::Fused,
        ReportSource::Query,
    ];

    /// Integer stored in the station tables' `source` column.
    pub fn code(self) -> i16 {
        match self {
            ReportSource::Fixed => 0,
            ReportSource::Gnss => 3,
            ReportSource::Fused => 6,
            ReportSource::Query => 9,
        }
    }

    /// Inverse of [`ReportSource::code`].
    pub fn from_code(code: i64) -> Option<ReportSource> {
        ReportSource::ALL
            .into_iter()
            .find(|s| i64::from(s.code()) == code)
    }

    /// Name used in queue items and export configuration.
    pub fn name(self) -> &'static str {
        match self {
            ReportSource::Fixed => "fixed",
            ReportSource::Gnss => "gnss",
            ReportSource::Fused => "fused",
            ReportSource::Query => "query",
        }
    }

    /// Parses a source name.
    pub fn from_name(name: &str) -> Option<ReportSource> {
        ReportSource::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for ReportSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
