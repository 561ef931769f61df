//! Coverage tiles of the data map, drawn without external tools: quadtree keys
//! of points (`keys`) and the tile renderer (`render`). Pure functions; the
//! batch export (`ichnaea datamap`) and the live tiles of the web role share
//! them, so both draw the same pixels for the same points.

pub mod keys;
pub mod render;
