//! Stumblers moving along the streets of the world and the reports they make:
//! each walks, cycles or drives a random route through the street graph,
//! scanning every few seconds, and uploads its reports in batches of 50–100 as
//! NeoStumbler does. Reports carry a noisy GNSS fix (the reported `accuracy` is
//! the 68 % radius of the actual error, as on Android) and what the phone
//! detected at its true position at that simulated time — so reports made after
//! the move time see moved access points at their new place.
//!
//! Generation is deterministic: each stumbler has its own random stream, and
//! stumblers are interleaved in simulated-time order (ties by index).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use fastrand::Rng;

use crate::geo::{Xy, round7};
use crate::rng::{normal, stream, uniform};
use crate::scan::Scanner;
use crate::wire::{Item, Position, blue_entries, cell_entries, wifi_entries};
use crate::world::{MNCS, World};

/// How a stumbler moves: speed range (m/s) and seconds between reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mode {
    /// Name for summaries.
    pub name: &'static str,
    /// Slowest and fastest speed, m/s.
    pub speed: (f64, f64),
    /// Shortest and longest time between reports, s.
    pub interval: (f64, f64),
}

/// Walking, cycling, driving through town.
pub const MODES: [Mode; 3] = [
    Mode {
        name: "walk",
        speed: (1.1, 1.7),
        interval: (4.0, 6.0),
    },
    Mode {
        name: "bike",
        speed: (3.5, 6.0),
        interval: (3.0, 4.0),
    },
    Mode {
        name: "car",
        speed: (7.0, 14.0),
        interval: (2.0, 3.0),
    },
];

/// Reports per upload: a stumbler uploads when it has collected this many.
pub const BATCH: (usize, usize) = (50, 100);

/// Where a report was really made (ground truth, not sent).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TruePoint {
    /// True map position of the phone.
    pub xy: Xy,
    /// Street segment it was on.
    pub segment: usize,
    /// Simulated second.
    pub t_s: f64,
    /// Stumbler index.
    pub stumbler: usize,
}

/// One upload: the reports and where they were really made.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Reports in the order they were made.
    pub items: Vec<Item>,
    /// Ground truth of each report.
    pub truth: Vec<TruePoint>,
}

struct Stumbler {
    rng: Rng,
    mode: Mode,
    operator: usize,
    /// Node the stumbler left to enter `segment`.
    from: usize,
    segment: usize,
    /// Metres travelled along `segment` from `from`.
    along: f64,
    t_s: f64,
    batch_size: usize,
    pending: Batch,
}

impl Stumbler {
    fn position(&self, world: &World) -> (Xy, f64) {
        let streets = &world.streets;
        let len = streets.length(self.segment).max(1e-9);
        let (a, b) = streets.segments[self.segment];
        let t = (self.along / len).clamp(0.0, 1.0);
        let t = if self.from == a { t } else { 1.0 - t };
        let (p, q) = if self.from == a {
            (streets.nodes[a], streets.nodes[b])
        } else {
            (streets.nodes[b], streets.nodes[a])
        };
        let heading = (q.x - p.x).atan2(q.y - p.y).to_degrees().rem_euclid(360.0);
        (streets.point(self.segment, t), heading)
    }

    fn advance(&mut self, world: &World, mut metres: f64) {
        let streets = &world.streets;
        loop {
            let left = streets.length(self.segment) - self.along;
            if metres < left {
                self.along += metres;
                return;
            }
            metres -= left;
            let at = streets.other_end(self.segment, self.from);
            let options: Vec<usize> = streets.adjacency[at]
                .iter()
                .copied()
                .filter(|&s| s != self.segment)
                .collect();
            if !options.is_empty() {
                self.segment = options[self.rng.usize(..options.len())];
            }
            self.from = at;
            self.along = 0.0;
        }
    }
}

/// The stream of uploads of a simulation: an iterator of [`Batch`]es in the
/// order stumblers complete them.
pub struct Traffic<'w> {
    scanner: Scanner<'w>,
    stumblers: Vec<Stumbler>,
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    remaining: u64,
    start_ms: i64,
    flush: VecDeque<Batch>,
}

impl<'w> Traffic<'w> {
    /// `reports` reports by `stumblers` stumblers in `world`, stamped from
    /// `start_ms` (the Unix time of simulated second 0).
    pub fn new(world: &'w World, stumblers: usize, reports: u64, start_ms: i64) -> Traffic<'w> {
        let seed = world.params.seed;
        let mut people = Vec::with_capacity(stumblers);
        let mut queue = BinaryHeap::new();
        for i in 0..stumblers {
            let mut rng = stream(seed, "stumbler", i as u64);
            let mix = world.params.scenario.stumbler_mix;
            let mode = if world.params.scenario.uniform_mix() {
                MODES[rng.usize(..MODES.len())]
            } else {
                let mut roll = rng.f64() * mix.iter().sum::<f64>();
                let mut pick = MODES.len() - 1;
                for (k, w) in mix.iter().enumerate() {
                    if roll < *w {
                        pick = k;
                        break;
                    }
                    roll -= w;
                }
                MODES[pick]
            };
            let operator = rng.usize(..MNCS.len());
            let (segment, t) = world.street_point(&mut rng);
            let from = world.streets.segments[segment].0;
            let along = t * world.streets.length(segment);
            // Stumblers set out during the first ten simulated minutes.
            let t_s = uniform(&mut rng, 0.0, 600.0);
            let batch_size = rng.usize(BATCH.0..=BATCH.1);
            queue.push(Reverse(((t_s * 1000.0) as u64, i)));
            people.push(Stumbler {
                rng,
                mode,
                operator,
                from,
                segment,
                along,
                t_s,
                batch_size,
                pending: Batch {
                    items: Vec::new(),
                    truth: Vec::new(),
                },
            });
        }
        Traffic {
            scanner: Scanner::new(world),
            stumblers: people,
            queue,
            remaining: reports,
            start_ms,
            flush: VecDeque::new(),
        }
    }

    /// The typical simulated length of a run, seconds: the default start time
    /// puts the last report near the present.
    pub fn expected_span_s(stumblers: usize, reports: u64) -> f64 {
        let per = reports as f64 / stumblers.max(1) as f64;
        600.0 + per * 3.5
    }

    /// Makes stumbler `i`'s next report; returns a full batch if it completed one.
    fn step(&mut self, i: usize) -> Option<Batch> {
        let world = self.scanner.world();
        let s = &mut self.stumblers[i];
        let (xy, heading) = s.position(world);
        let t_s = s.t_s;
        let rng = &mut s.rng;
        let scan = self.scanner.scan(rng, xy, t_s, s.operator);
        // GNSS fix: `accuracy` is the 68 % radius (σ = a / 1.515 per axis).
        let (lo, hi) = world.params.scenario.gnss_accuracy;
        let accuracy = uniform(rng, lo, hi);
        let sigma = accuracy / 1.515;
        let fix = Xy {
            x: xy.x + sigma * normal(rng),
            y: xy.y + sigma * normal(rng),
        };
        let (lat, lon) = world.plane.to_latlon(fix);
        let speed = uniform(rng, s.mode.speed.0, s.mode.speed.1);
        let ages: Vec<i64> = scan.wifi.iter().map(|_| rng.i64(0..3000)).collect();
        let item = Item {
            timestamp: self.start_ms + (t_s * 1000.0).round() as i64,
            position: Position {
                latitude: round7(lat),
                longitude: round7(lon),
                accuracy: (accuracy * 10.0).round() / 10.0,
                age: rng.i64(0..1000),
                altitude: (340.0 + 50.0 * normal(rng)).round() / 10.0,
                heading: (heading * 10.0).round() / 10.0,
                speed: (speed * 100.0).round() / 100.0,
                source: "gnss",
            },
            wifi_access_points: wifi_entries(world, &scan.wifi, &ages, true),
            cell_towers: cell_entries(world, &scan.cells, rng.i64(0..5000), true),
            bluetooth_beacons: blue_entries(world, &scan.blue, rng.i64(0..3000)),
        };
        s.pending.items.push(item);
        s.pending.truth.push(TruePoint {
            xy,
            segment: s.segment,
            t_s,
            stumbler: i,
        });
        let dt = uniform(&mut s.rng, s.mode.interval.0, s.mode.interval.1);
        s.advance(world, speed * dt);
        s.t_s += dt;
        if s.pending.items.len() >= s.batch_size {
            s.batch_size = s.rng.usize(BATCH.0..=BATCH.1);
            return Some(std::mem::replace(
                &mut s.pending,
                Batch {
                    items: Vec::new(),
                    truth: Vec::new(),
                },
            ));
        }
        None
    }
}

impl Iterator for Traffic<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        loop {
            if let Some(batch) = self.flush.pop_front() {
                return Some(batch);
            }
            if self.remaining == 0 {
                // The end: every stumbler uploads what it still holds.
                for s in &mut self.stumblers {
                    if !s.pending.items.is_empty() {
                        let batch = std::mem::replace(
                            &mut s.pending,
                            Batch {
                                items: Vec::new(),
                                truth: Vec::new(),
                            },
                        );
                        self.flush.push_back(batch);
                    }
                }
                return self.flush.pop_front();
            }
            let Reverse((_, i)) = self.queue.pop()?;
            self.remaining -= 1;
            let full = self.step(i);
            let next_ms = (self.stumblers[i].t_s * 1000.0) as u64;
            self.queue.push(Reverse((next_ms, i)));
            if let Some(batch) = full {
                return Some(batch);
            }
        }
    }
}
