//! Draws coverage tiles from sorted quadtree keys: zooms 0–11 as 256-px tiles `tiles/<z>/<x>/<y>.png`, plus the
//! 512-px zoom-0 tile `tiles/0/0/0@2x.png`. Tiles without a visible pixel are
//! not written.
//!
//! An emulation of datamaps `render -B 12:0.0379:0.874 -c0088FF -t0
//! -O 16:1600:1.5 -G 0.5`, then `pngquant 32`, from its documented meaning
//! rather than its code:
//!
//! * `-B base:brightness:ramp` = 12 : 0.0379 : 0.874. Below the base zoom 12
//!   only every 2^(12 − z)-th point of a tile (in quadtree order, from the
//!   tile's first point) is drawn — datamaps' default dot-dropping exponent 2
//!   halves the dots per zoom level — and each drawn dot adds
//!   0.0379 · 0.874^(z − 12) to the pixels it covers.
//! * A dot is a one-pixel square centred on the point and spread bilinearly
//!   over the (up to) four pixels it overlaps (datamaps anchors the square's
//!   corner at the point: ours sits half a pixel further north-west).
//!   Coverage that falls outside the tile is dropped, as datamaps does.
//! * `-G 0.5`: a pixel's intensity is (sum of its dots)^0.5, capped at 1.
//! * `-c0088FF -t0`: transparent background; intensity 0…0.5 fades the colour
//!   #0088FF in (alpha 0…255), 0.5…1 blends it towards white (datamaps'
//!   default oversaturation colour), fully opaque.
//! * `-O 16:1600:1.5` tunes line segments only; the data map has points only,
//!   so it has no effect here (as in the original).
//! * `-T 512` (the @2x tile) draws zoom 0 with zoom-1 pixels, so it uses
//!   zoom 1's dot dropping and brightness.
//! * pngquant to 32 colours: intensities are quantised to 32 levels and written
//!   as an 8-bit indexed PNG with a 32-entry palette and a tRNS chunk.

use std::path::PathBuf;

use super::keys::unkey;

/// Deepest zoom rendered.
pub const MAX_ZOOM: u8 = 11;
/// Zoom at which every point is drawn (`-B` base).
const DOT_BASE: i32 = 12;
/// Brightness of one dot at the base zoom (`-B` brightness).
const DOT_BRIGHTNESS: f64 = 0.0379;
/// Brightness factor per zoom level above the base (`-B` ramp).
const DOT_RAMP: f64 = 0.874;
/// `-G`.
const GAMMA: f64 = 0.5;
/// `-c`: the saturated colour.
const COLOR: [u8; 3] = [0x00, 0x88, 0xFF];
/// Palette size (pngquant's 32 colours); index 0 is transparent.
const LEVELS: usize = 32;

/// One tile to draw: its zoom, position, edge length and run of points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileJob {
    /// Zoom level.
    pub z: u8,
    /// Column.
    pub x: u32,
    /// Row.
    pub y: u32,
    /// Edge in pixels: 256, or 512 for the high-DPI zoom-0 tile.
    pub size: u32,
    /// First point (index into the sorted keys).
    pub start: usize,
    /// One past the last point.
    pub end: usize,
}

impl TileJob {
    /// Where the tile goes below the output directory.
    pub fn relative_path(&self) -> PathBuf {
        let name = if self.size == 512 {
            format!("{}@2x.png", self.y)
        } else {
            format!("{}.png", self.y)
        };
        PathBuf::from("tiles")
            .join(self.z.to_string())
            .join(self.x.to_string())
            .join(name)
    }
}

/// Every tile that has points, zooms 0–11, plus the 512-px zoom-0 tile; from
/// sorted keys. The zoom-11 runs come from one scan, coarser zooms merge them.
pub fn jobs(keys: &[u64]) -> Vec<TileJob> {
    if keys.is_empty() {
        return Vec::new();
    }
    let deepest = u32::from(MAX_ZOOM);
    // (prefix, start) of every zoom-11 tile.
    let mut runs: Vec<(u64, usize)> = Vec::new();
    for (i, &k) in keys.iter().enumerate() {
        let prefix = k >> (64 - 2 * deepest);
        if runs.last().is_none_or(|&(p, _)| p != prefix) {
            runs.push((prefix, i));
        }
    }
    let mut out = Vec::new();
    for z in (0..=MAX_ZOOM).rev() {
        let shift = 2 * (u32::from(MAX_ZOOM) - u32::from(z));
        let mut level: Vec<(u64, usize)> = Vec::new();
        for &(p, start) in &runs {
            let prefix = p >> shift;
            if level.last().is_none_or(|&(q, _)| q != prefix) {
                level.push((prefix, start));
            }
        }
        for (i, &(prefix, start)) in level.iter().enumerate() {
            let end = level.get(i + 1).map_or(keys.len(), |&(_, s)| s);
            // The prefix's bits are the tile's row and column, interleaved.
            let (x, y) = if z == 0 {
                (0, 0)
            } else {
                let (wx, wy) = unkey(prefix << (64 - 2 * u32::from(z)));
                (wx >> (32 - u32::from(z)), wy >> (32 - u32::from(z)))
            };
            out.push(TileJob {
                z,
                x,
                y,
                size: 256,
                start,
                end,
            });
        }
    }
    out.push(TileJob {
        z: 0,
        x: 0,
        y: 0,
        size: 512,
        start: 0,
        end: keys.len(),
    });
    out
}

/// The RGBA colour of palette index `level` (0 = transparent).
fn palette_color(level: usize) -> [u8; 4] {
    if level == 0 {
        return [0, 0, 0, 0];
    }
    let i = level as f64 / (LEVELS - 1) as f64;
    if i <= 0.5 {
        let alpha = (255.0 * i / 0.5).round() as u8;
        [COLOR[0], COLOR[1], COLOR[2], alpha]
    } else {
        let t = (i - 0.5) / 0.5;
        let mix = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * t).round() as u8;
        [mix(COLOR[0]), mix(COLOR[1]), mix(COLOR[2]), 255]
    }
}

/// Palette (RGB) and tRNS (alpha) chunks of every tile.
fn palette() -> (Vec<u8>, Vec<u8>) {
    let mut rgb = Vec::with_capacity(LEVELS * 3);
    let mut alpha = Vec::with_capacity(LEVELS);
    for level in 0..LEVELS {
        let c = palette_color(level);
        rgb.extend_from_slice(&c[..3]);
        alpha.push(c[3]);
    }
    (rgb, alpha)
}

/// The palette indices (row-major, `size`²) of one tile; `None` when no pixel
/// is visible.
pub fn render_indices(keys: &[u64], job: &TileJob) -> Option<Vec<u8>> {
    Canvas::new().render_indices(keys, job)
}

/// A reusable drawing surface (one per render thread): the accumulation
/// buffer stays all-zero between tiles and only the pixels a dot touched are
/// visited and reset, so a sparse tile costs its dots, not its 65 536 pixels.
pub struct Canvas {
    image: Vec<f64>,
    touched: Vec<u32>,
}

impl Default for Canvas {
    fn default() -> Self {
        Self::new()
    }
}

impl Canvas {
    /// A surface for tiles up to 512 px.
    pub fn new() -> Canvas {
        Canvas {
            image: vec![0.0; 512 * 512],
            touched: Vec::new(),
        }
    }

    /// As [`render_indices`], reusing this surface.
    pub fn render_indices(&mut self, keys: &[u64], job: &TileJob) -> Option<Vec<u8>> {
        let size = job.size.min(512) as usize;
        let size_bits = job.size.trailing_zeros(); // 8 or 9
        // Zoom whose pixels these are: the 512-px tile draws zoom+1 pixels.
        let pixel_zoom = i32::from(job.z) + size_bits as i32 - 8;
        let step = if pixel_zoom >= DOT_BASE {
            1
        } else {
            1usize << (DOT_BASE - pixel_zoom)
        };
        let bright = DOT_BRIGHTNESS * DOT_RAMP.powi(pixel_zoom - DOT_BASE);
        let tile_shift = 32 - u32::from(job.z); // world bits per tile edge (may be 32)
        let origin_x = u64::from(job.x) << tile_shift;
        let origin_y = u64::from(job.y) << tile_shift;
        // World units per pixel.
        let unit = (1u64 << (tile_shift - size_bits)) as f64;
        let Canvas { image, touched } = self;
        touched.clear();
        let mut add = |px: i64, py: i64, v: f64| {
            if v > 0.0 && px >= 0 && py >= 0 && (px as usize) < size && (py as usize) < size {
                let at = py as usize * size + px as usize;
                if image[at] == 0.0 {
                    touched.push(at as u32);
                }
                image[at] += v;
            }
        };
        let end = job.end.min(keys.len());
        let mut i = job.start;
        while i < end {
            let (wx, wy) = unkey(keys[i]);
            // Pixel coordinates of the dot's north-west corner (centred square).
            let fx = (u64::from(wx) - origin_x) as f64 / unit - 0.5;
            let fy = (u64::from(wy) - origin_y) as f64 / unit - 0.5;
            let (x0, y0) = (fx.floor(), fy.floor());
            let (ax, ay) = (fx - x0, fy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            add(x0, y0, bright * (1.0 - ax) * (1.0 - ay));
            add(x0 + 1, y0, bright * ax * (1.0 - ay));
            add(x0, y0 + 1, bright * (1.0 - ax) * ay);
            add(x0 + 1, y0 + 1, bright * ax * ay);
            i += step;
        }
        let top = (LEVELS - 1) as f64;
        let mut visible = false;
        let mut indices = vec![0u8; size * size];
        for &at in touched.iter() {
            let at = at as usize;
            let intensity = image[at].powf(GAMMA).min(1.0);
            let level = (intensity * top).round() as u8;
            visible |= level > 0;
            indices[at] = level;
            image[at] = 0.0;
        }
        visible.then_some(indices)
    }
}

/// Encodes palette indices as an indexed PNG with transparency.
pub fn encode_png(indices: &[u8], size: u32) -> Result<Vec<u8>, png::EncodingError> {
    let (rgb, alpha) = palette();
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, size, size);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_palette(rgb);
        encoder.set_trns(alpha);
        encoder.set_compression(png::Compression::High);
        // Filters rarely help palette images; mostly-empty rows compress best raw.
        encoder.set_filter(png::Filter::NoFilter);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(indices)?;
        writer.finish()?;
    }
    Ok(out)
}

/// The PNG of one tile, `None` when nothing is visible.
pub fn render_tile(keys: &[u64], job: &TileJob) -> Result<Option<Vec<u8>>, png::EncodingError> {
    render_tile_on(&mut Canvas::new(), keys, job)
}

/// As [`render_tile`], reusing `canvas`.
pub fn render_tile_on(
    canvas: &mut Canvas,
    keys: &[u64],
    job: &TileJob,
) -> Result<Option<Vec<u8>>, png::EncodingError> {
    match canvas.render_indices(keys, job) {
        Some(indices) => Ok(Some(encode_png(&indices, job.size)?)),
        None => Ok(None),
    }
}
