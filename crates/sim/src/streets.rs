//! The street network of the synthetic city: a perturbed grid of intersections
//! joined by segments, plus a few diagonal avenues through the grid, as a graph
//! the stumblers walk along. Everything placed in the world (access points,
//! beacons, query positions) is placed beside or on these streets.

use fastrand::Rng;

use crate::geo::Xy;
use crate::rng::uniform;

/// Mean distance between parallel streets, metres.
pub const BLOCK_M: f64 = 180.0;
/// Largest shift of an intersection from its grid place, metres.
const JITTER_M: f64 = 35.0;

/// The street graph: intersections and the straight segments between them.
#[derive(Clone, Debug, PartialEq)]
pub struct Streets {
    /// Intersections.
    pub nodes: Vec<Xy>,
    /// Segments as pairs of node indices (smaller index first).
    pub segments: Vec<(usize, usize)>,
    /// For each node, the segments that meet there (ascending).
    pub adjacency: Vec<Vec<usize>>,
}

impl Streets {
    /// A perturbed grid covering a square of `size_m` around the centre, with
    /// three diagonal avenues (the two main diagonals and one parallel to the
    /// first, a third of the way in).
    pub fn generate(rng: &mut Rng, size_m: f64) -> Streets {
        let n = ((size_m / BLOCK_M).round() as usize).max(2) + 1;
        let step = size_m / (n - 1) as f64;
        let half = size_m / 2.0;
        let jitter = JITTER_M.min(step / 4.0);
        let mut nodes = Vec::with_capacity(n * n);
        for j in 0..n {
            for i in 0..n {
                let edge_i = i == 0 || i == n - 1;
                let edge_j = j == 0 || j == n - 1;
                // Border intersections stay on the border so the city is a square.
                let dx = if edge_i {
                    0.0
                } else {
                    uniform(rng, -jitter, jitter)
                };
                let dy = if edge_j {
                    0.0
                } else {
                    uniform(rng, -jitter, jitter)
                };
                nodes.push(Xy {
                    x: -half + i as f64 * step + dx,
                    y: -half + j as f64 * step + dy,
                });
            }
        }
        let id = |i: usize, j: usize| j * n + i;
        let mut segments = Vec::new();
        for j in 0..n {
            for i in 0..n {
                if i + 1 < n {
                    segments.push((id(i, j), id(i + 1, j)));
                }
                if j + 1 < n {
                    segments.push((id(i, j), id(i, j + 1)));
                }
            }
        }
        // Diagonal avenues: chains of diagonal neighbours.
        for k in 0..n - 1 {
            segments.push((id(k, k), id(k + 1, k + 1)));
            segments.push((id(k, n - 1 - k), id(k + 1, n - 2 - k)).min_first());
        }
        let offset = n / 3;
        for k in 0..n - 1 - offset {
            segments.push((id(k + offset, k), id(k + offset + 1, k + 1)));
        }
        segments.sort_unstable();
        segments.dedup();
        let mut adjacency = vec![Vec::new(); nodes.len()];
        for (s, &(a, b)) in segments.iter().enumerate() {
            adjacency[a].push(s);
            adjacency[b].push(s);
        }
        Streets {
            nodes,
            segments,
            adjacency,
        }
    }

    /// Length of segment `s`, metres.
    pub fn length(&self, s: usize) -> f64 {
        let (a, b) = self.segments[s];
        self.nodes[a].dist(self.nodes[b])
    }

    /// The point at `t` (0 … 1) along segment `s` from its first node.
    pub fn point(&self, s: usize, t: f64) -> Xy {
        let (a, b) = self.segments[s];
        let (p, q) = (self.nodes[a], self.nodes[b]);
        Xy {
            x: p.x + (q.x - p.x) * t,
            y: p.y + (q.y - p.y) * t,
        }
    }

    /// The point `offset` metres to the left (negative: right) of the point at
    /// `t` along segment `s`: a building front beside the street.
    pub fn beside(&self, s: usize, t: f64, offset: f64) -> Xy {
        let (a, b) = self.segments[s];
        let (p, q) = (self.nodes[a], self.nodes[b]);
        let len = p.dist(q).max(1e-9);
        let on = self.point(s, t);
        Xy {
            x: on.x - (q.y - p.y) / len * offset,
            y: on.y + (q.x - p.x) / len * offset,
        }
    }

    /// Distance from `p` to the nearest segment, metres.
    pub fn distance_to_street(&self, p: Xy) -> f64 {
        self.segments
            .iter()
            .map(|&(a, b)| point_segment_distance(p, self.nodes[a], self.nodes[b]))
            .fold(f64::INFINITY, f64::min)
    }

    /// Total street length, metres.
    pub fn total_length(&self) -> f64 {
        (0..self.segments.len()).map(|s| self.length(s)).sum()
    }

    /// The node at the other end of segment `s` from `node`.
    pub fn other_end(&self, s: usize, node: usize) -> usize {
        let (a, b) = self.segments[s];
        if a == node { b } else { a }
    }
}

trait MinFirst {
    fn min_first(self) -> Self;
}

impl MinFirst for (usize, usize) {
    fn min_first(self) -> Self {
        (self.0.min(self.1), self.0.max(self.1))
    }
}

/// Distance from `p` to the segment `a`–`b`.
pub fn point_segment_distance(p: Xy, a: Xy, b: Xy) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    p.dist(Xy {
        x: a.x + t * dx,
        y: a.y + t * dy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn grid_with_diagonals_is_connected() {
        let s = Streets::generate(&mut stream(1, "streets", 0), 2000.0);
        // 12 × 12 nodes for 2 km at 180 m blocks.
        assert_eq!(s.nodes.len(), 144);
        let mut seen = vec![false; s.nodes.len()];
        let mut todo = vec![0];
        seen[0] = true;
        while let Some(n) = todo.pop() {
            for &seg in &s.adjacency[n] {
                let m = s.other_end(seg, n);
                if !seen[m] {
                    seen[m] = true;
                    todo.push(m);
                }
            }
        }
        assert!(seen.iter().all(|&v| v));
        assert!(s.segments.iter().all(|&(a, b)| a < b));
        let grid = 2 * 12 * 11;
        assert!(
            s.segments.len() > grid + 11,
            "{} segments",
            s.segments.len()
        );
    }

    #[test]
    fn beside_is_offset_from_the_street() {
        let s = Streets::generate(&mut stream(2, "streets", 0), 2000.0);
        let p = s.beside(5, 0.5, 12.0);
        let d = point_segment_distance(p, s.nodes[s.segments[5].0], s.nodes[s.segments[5].1]);
        assert!((d - 12.0).abs() < 1e-6, "{d}");
    }
}
