//! The public site's settings, from the configuration.

use std::time::Duration;

use anyhow::Context;
use ichnaea_pipeline::tiles::sync::open_directory;
use ichnaea_web::site::{ObjectDir, Operator, Site, SiteConfig, TileSettings};

use crate::config::Config;

/// The site of `config`.
pub fn site(config: &Config) -> anyhow::Result<Site> {
    Ok(Site::new(site_config(config)?))
}

/// The site's settings of `config`.
pub fn site_config(config: &Config) -> anyhow::Result<SiteConfig> {
    Ok(SiteConfig {
        site_name: config.site_name.clone(),
        operator: Operator {
            name: config.operator_name.clone(),
            email: config.operator_email.clone(),
            url: config.operator_url.clone(),
            address: config.operator_address.clone(),
        },
        source_url: config.source_url.clone(),
        content_dir: config.site_content_dir.clone(),
        map_base_url: config.map_base_url.clone(),
        map_base_attribution: config.map_base_attribution.clone(),
        asset_url: config.asset_url.clone(),
        exports: config
            .cell_export_url()
            .map(|url| directory(&url))
            .transpose()
            .context("the cell export directory (cell_export_url)")?,
        tiles: TileSettings {
            live_min_zoom: config.tiles_live_min_zoom,
            live_max_rows: config.tiles_live_max_rows,
            memory_bytes: config.tiles_cache_bytes,
            disk_dir: Some(config.tiles_cache_dir()),
            batch: Some(directory(&config.tiles_url()).context("the tile bucket (tiles_url)")?),
            change_poll: Duration::from_secs(config.tiles_change_poll),
            concurrency: render_threads(),
        },
    })
}

/// Threads for drawing tiles: half the CPUs, so requests keep the rest.
pub fn render_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

fn directory(url: &str) -> anyhow::Result<ObjectDir> {
    let (store, prefix, s3) = open_directory(url)?;
    Ok(ObjectDir { store, prefix, s3 })
}
