//! Scenarios: the world, radio and stumbler assumptions of a simulation, read
//! from a TOML file (`--scenario FILE`), so the positioning model can be
//! measured on cities it was not tuned on (dense centre, suburb, village, harsh
//! radio). Every member is optional; a missing one keeps today's default, and
//! the empty scenario is exactly the default world (same bytes, same traffic).
//!
//! ```toml
//! name = "suburb"
//! [city]            # overrides --size-km, --lat, --lon, --mcc
//! size_km = 6.0
//! [density]         # per km², centre and edge of the city
//! wifi_centre = 400.0
//! wifi_edge = 80.0
//! [radio.wifi_24]   # p0, n, sigma, sensitivity, ramp, miss, max_range
//! n = 3.4
//! sigma = 8.0
//! [radio.cell]      # n, sigma, floor_shift_db, miss
//! sigma = 8.0
//! [gnss]            # the reported accuracy is drawn from [accuracy_min, accuracy_max]
//! accuracy_max = 25.0
//! [stumblers]       # relative weights of the modes
//! car = 3.0
//! [moves]           # overrides --move-share and --move-at
//! share = 0.05
//! at_s = 900.0
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::radio::{BLUE, CELL_N, CELL_SIGMA, PathLoss, WIFI_5, WIFI_24};

/// A scenario file: every section optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScenarioFile {
    /// Name shown in reports.
    pub name: Option<String>,
    /// City size, centre and operators.
    pub city: CityFile,
    /// Transmitter densities.
    pub density: DensityFile,
    /// Radio models per kind.
    pub radio: RadioFile,
    /// GNSS noise of the reports.
    pub gnss: GnssFile,
    /// Stumbler mix.
    pub stumblers: StumblersFile,
    /// Moving access points.
    pub moves: MovesFile,
}

/// `[city]`: overrides the world flags when present.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CityFile {
    /// Side of the square city, km.
    pub size_km: Option<f64>,
    /// Latitude of the centre.
    pub lat: Option<f64>,
    /// Longitude of the centre.
    pub lon: Option<f64>,
    /// Mobile country code.
    pub mcc: Option<u16>,
}

/// `[density]`: transmitters per km².
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DensityFile {
    /// Access points per km² in the centre.
    pub wifi_centre: Option<f64>,
    /// Access points per km² at the edge.
    pub wifi_edge: Option<f64>,
    /// Shops with beacons per km² in the centre.
    pub shops_centre: Option<f64>,
    /// Shops with beacons per km² at the edge.
    pub shops_edge: Option<f64>,
    /// Multiplies the distance between cell sites.
    pub cell_spacing: Option<f64>,
}

/// `[radio.*]`: one path-loss model, each member optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathLossFile {
    /// Mean received power at 1 m, dBm.
    pub p0: Option<f64>,
    /// Path-loss exponent.
    pub n: Option<f64>,
    /// Shadowing, dB.
    pub sigma: Option<f64>,
    /// Power detected half of the time, dBm.
    pub sensitivity: Option<f64>,
    /// Width of the detection ramp, dB.
    pub ramp: Option<f64>,
    /// Share missed whatever the power.
    pub miss: Option<f64>,
    /// Never detected beyond, m (default: where detection becomes negligible).
    pub max_range: Option<f64>,
}

/// `[radio.cell]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CellRadioFile {
    /// Path-loss exponent.
    pub n: Option<f64>,
    /// Shadowing, dB.
    pub sigma: Option<f64>,
    /// Shifts the weakest signal a phone lists, dB (positive: less sensitive).
    pub floor_shift_db: Option<f64>,
    /// Share of neighbour cells missed.
    pub miss: Option<f64>,
}

/// `[radio]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RadioFile {
    /// Wi-Fi on 2.4 GHz.
    pub wifi_24: PathLossFile,
    /// Wi-Fi on 5 GHz.
    pub wifi_5: PathLossFile,
    /// Bluetooth LE.
    pub blue: PathLossFile,
    /// Cells.
    pub cell: CellRadioFile,
}

/// `[gnss]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GnssFile {
    /// Smallest reported accuracy (68 % radius), m.
    pub accuracy_min: Option<f64>,
    /// Largest reported accuracy, m.
    pub accuracy_max: Option<f64>,
}

/// `[stumblers]`: relative weights.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StumblersFile {
    /// Walking.
    pub walk: Option<f64>,
    /// Cycling.
    pub bike: Option<f64>,
    /// Driving.
    pub car: Option<f64>,
}

/// `[moves]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MovesFile {
    /// Share of access points that move.
    pub share: Option<f64>,
    /// Simulated second of the move.
    pub at_s: Option<f64>,
}

/// Cell radio model of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CellModel {
    /// Path-loss exponent.
    pub n: f64,
    /// Shadowing, dB.
    pub sigma: f64,
    /// Shift of the listing floor, dB.
    pub floor_shift_db: f64,
    /// Share of neighbours missed.
    pub miss: f64,
}

/// The effective assumptions of a world (defaults filled in).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    /// Name.
    pub name: String,
    /// Access points per km², centre and edge.
    pub wifi_density: (f64, f64),
    /// Shops per km², centre and edge.
    pub shop_density: (f64, f64),
    /// Multiplier of the cell-site spacing.
    pub cell_spacing: f64,
    /// Wi-Fi 2.4 GHz.
    pub wifi_24: PathLoss,
    /// Wi-Fi 5 GHz.
    pub wifi_5: PathLoss,
    /// Bluetooth.
    pub blue: PathLoss,
    /// Cells.
    pub cell: CellModel,
    /// Range of the reported GNSS accuracy, m.
    pub gnss_accuracy: (f64, f64),
    /// Weights of walk, bike, car.
    pub stumbler_mix: [f64; 3],
}

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario {
            name: "default".to_string(),
            wifi_density: (1500.0, 150.0),
            shop_density: (120.0, 8.0),
            cell_spacing: 1.0,
            wifi_24: WIFI_24,
            wifi_5: WIFI_5,
            blue: BLUE,
            cell: CellModel {
                n: CELL_N,
                sigma: CELL_SIGMA,
                floor_shift_db: 0.0,
                miss: 0.0,
            },
            gnss_accuracy: (3.0, 15.0),
            stumbler_mix: [1.0, 1.0, 1.0],
        }
    }
}

impl Scenario {
    /// Whether this is today's default world (left out of the world JSON).
    pub fn is_default(&self) -> bool {
        *self == Scenario::default()
    }

    /// Whether the stumbler modes are equally likely (the default draw).
    pub fn uniform_mix(&self) -> bool {
        self.stumbler_mix[0] == self.stumbler_mix[1] && self.stumbler_mix[1] == self.stumbler_mix[2]
    }
}

fn invalid(reason: String) -> SimError {
    SimError::InvalidOption {
        flag: "--scenario",
        reason,
    }
}

fn check(name: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<(), SimError> {
    match v {
        Some(x) if !(x.is_finite() && (lo..=hi).contains(&x)) => {
            Err(invalid(format!("{name} must be {lo} to {hi}")))
        }
        _ => Ok(()),
    }
}

fn path_loss(name: &str, base: PathLoss, f: &PathLossFile) -> Result<PathLoss, SimError> {
    check(&format!("{name}.p0"), f.p0, -100.0, 0.0)?;
    check(&format!("{name}.n"), f.n, 1.5, 6.0)?;
    check(&format!("{name}.sigma"), f.sigma, 0.0, 20.0)?;
    check(&format!("{name}.sensitivity"), f.sensitivity, -130.0, -40.0)?;
    check(&format!("{name}.ramp"), f.ramp, 0.1, 10.0)?;
    check(&format!("{name}.miss"), f.miss, 0.0, 0.9)?;
    check(&format!("{name}.max_range"), f.max_range, 1.0, 2000.0)?;
    let mut m = PathLoss {
        p0: f.p0.unwrap_or(base.p0),
        n: f.n.unwrap_or(base.n),
        sigma: f.sigma.unwrap_or(base.sigma),
        sensitivity: f.sensitivity.unwrap_or(base.sensitivity),
        ramp: f.ramp.unwrap_or(base.ramp),
        miss: f.miss.unwrap_or(base.miss),
        max_range: base.max_range,
    };
    m.max_range = match f.max_range {
        Some(r) => r,
        None if m == base => base.max_range,
        None => {
            // Where the mean signal of a strong (+3 dB) transmitter, raised by
            // three shadowing deviations, is still three ramps below the
            // sensitivity: detection beyond is negligible.
            let margin = m.p0 + 3.0 + 3.0 * m.sigma - (m.sensitivity - 3.0 * m.ramp);
            10f64.powf(margin / (10.0 * m.n)).clamp(20.0, 2000.0)
        }
    };
    Ok(m)
}

impl ScenarioFile {
    /// Reads and parses a scenario file.
    pub fn read(path: &Path) -> Result<ScenarioFile, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))
    }

    /// The effective scenario (defaults filled in), checked.
    pub fn scenario(&self) -> Result<Scenario, SimError> {
        let d = Scenario::default();
        let den = &self.density;
        for (name, v) in [
            ("density.wifi_centre", den.wifi_centre),
            ("density.wifi_edge", den.wifi_edge),
            ("density.shops_centre", den.shops_centre),
            ("density.shops_edge", den.shops_edge),
        ] {
            check(name, v, 0.0, 20_000.0)?;
        }
        check("density.cell_spacing", den.cell_spacing, 0.2, 10.0)?;
        let c = &self.radio.cell;
        check("radio.cell.n", c.n, 2.0, 6.0)?;
        check("radio.cell.sigma", c.sigma, 0.0, 20.0)?;
        check("radio.cell.floor_shift_db", c.floor_shift_db, -20.0, 30.0)?;
        check("radio.cell.miss", c.miss, 0.0, 0.9)?;
        let g = &self.gnss;
        check("gnss.accuracy_min", g.accuracy_min, 0.5, 200.0)?;
        check("gnss.accuracy_max", g.accuracy_max, 0.5, 200.0)?;
        let gnss = (
            g.accuracy_min.unwrap_or(d.gnss_accuracy.0),
            g.accuracy_max.unwrap_or(d.gnss_accuracy.1),
        );
        if gnss.0 > gnss.1 {
            return Err(invalid(
                "gnss.accuracy_min must not exceed gnss.accuracy_max".to_string(),
            ));
        }
        let s = &self.stumblers;
        for (name, v) in [
            ("stumblers.walk", s.walk),
            ("stumblers.bike", s.bike),
            ("stumblers.car", s.car),
        ] {
            check(name, v, 0.0, 1000.0)?;
        }
        let mix = [
            s.walk.unwrap_or(1.0),
            s.bike.unwrap_or(1.0),
            s.car.unwrap_or(1.0),
        ];
        if mix.iter().sum::<f64>() <= 0.0 {
            return Err(invalid("stumbler weights must not all be 0".to_string()));
        }
        Ok(Scenario {
            name: self.name.clone().unwrap_or_else(|| d.name.clone()),
            wifi_density: (
                den.wifi_centre.unwrap_or(d.wifi_density.0),
                den.wifi_edge.unwrap_or(d.wifi_density.1),
            ),
            shop_density: (
                den.shops_centre.unwrap_or(d.shop_density.0),
                den.shops_edge.unwrap_or(d.shop_density.1),
            ),
            cell_spacing: den.cell_spacing.unwrap_or(1.0),
            wifi_24: path_loss("radio.wifi_24", WIFI_24, &self.radio.wifi_24)?,
            wifi_5: path_loss("radio.wifi_5", WIFI_5, &self.radio.wifi_5)?,
            blue: path_loss("radio.blue", BLUE, &self.radio.blue)?,
            cell: CellModel {
                n: c.n.unwrap_or(d.cell.n),
                sigma: c.sigma.unwrap_or(d.cell.sigma),
                floor_shift_db: c.floor_shift_db.unwrap_or(0.0),
                miss: c.miss.unwrap_or(0.0),
            },
            gnss_accuracy: gnss,
            stumbler_mix: mix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_world() {
        let f: ScenarioFile = toml::from_str("").unwrap();
        assert!(f.scenario().unwrap().is_default());
    }

    #[test]
    fn partial_override_keeps_the_rest() {
        let f: ScenarioFile = toml::from_str("[radio.wifi_24]\nn = 3.5\n").unwrap();
        let s = f.scenario().unwrap();
        assert_eq!(s.wifi_24.n, 3.5);
        assert_eq!(s.wifi_24.p0, WIFI_24.p0);
        assert!(s.wifi_24.max_range < WIFI_24.max_range);
        assert_eq!(s.wifi_5, WIFI_5);
    }

    #[test]
    fn unknown_members_and_bad_values_are_refused() {
        assert!(toml::from_str::<ScenarioFile>("[radio.wifi]\nn = 3\n").is_err());
        let f: ScenarioFile = toml::from_str("[radio.blue]\nsigma = -1\n").unwrap();
        assert!(f.scenario().is_err());
    }
}
