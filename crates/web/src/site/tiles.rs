//! Live coverage tiles (filled in by a later change).

use std::time::Duration;

use axum::Router;

use crate::SharedState;

/// How coverage tiles are rendered and cached.
#[derive(Clone, Debug)]
pub struct TileSettings {
    /// Poll interval of data-map changes.
    pub change_poll: Duration,
}

impl Default for TileSettings {
    fn default() -> Self {
        TileSettings {
            change_poll: Duration::from_secs(10),
        }
    }
}

pub(crate) struct Tiles {}

impl Tiles {
    pub fn new(_settings: TileSettings) -> Tiles {
        Tiles {}
    }
    pub fn renders(&self) -> u64 {
        0
    }
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
}
