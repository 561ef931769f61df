//! The public site's settings, from the configuration.

use ichnaea_web::site::{Operator, Site, SiteConfig};

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
        content_dir: config.site_content_dir.clone(),
        map_base_url: config.map_base_url.clone(),
        map_base_attribution: config.map_base_attribution.clone(),
        asset_url: config.asset_url.clone(),
        ..SiteConfig::default()
    })
}
