//! Clustering of found networks (locate §3.2 and §3.4).
//!
//! Sections (§) refer to docs/reference/locate.md.

use crate::cell::AreaKey;
use crate::geo::{GeoPoint, distance};

use super::position::Network;

/// Splits WiFi / Bluetooth networks into clusters of networks that agree
/// (§3.2): fewer than 2 networks → none; 2 → one cluster if they are at most
/// `max_distance` metres apart; more → complete-linkage agglomerative
/// clustering cut at `max_distance` (SciPy `linkage(method="complete")` +
/// `fcluster(criterion="distance")`), singletons dropped.
///
/// Clusters come in the order of their first member in `networks`; members
/// keep their input order.
pub fn cluster_networks<K: Clone>(
    networks: &[Network<K>],
    max_distance: f64,
) -> Vec<Vec<Network<K>>> {
    let n = networks.len();
    if n < 2 {
        return Vec::new();
    }
    if n == 2 {
        let (a, b) = (&networks[0], &networks[1]);
        return if distance(a.lat, a.lon, b.lat, b.lon) <= max_distance {
            vec![networks.to_vec()]
        } else {
            Vec::new()
        };
    }
    // Linkage distances between the current clusters (complete linkage:
    // the largest member distance), indexed by cluster slot.
    let points: Vec<GeoPoint> = networks
        .iter()
        .map(|w| GeoPoint::new(w.lat, w.lon))
        .collect();
    let mut dist = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let d = points[i].distance(&points[j]);
            dist[i][j] = d;
            dist[j][i] = d;
        }
    }
    let mut members: Vec<Option<Vec<usize>>> = (0..n).map(|i| Some(vec![i])).collect();
    loop {
        let mut best: Option<(f64, usize, usize)> = None;
        for i in 0..n {
            if members[i].is_none() {
                continue;
            }
            for j in i + 1..n {
                if members[j].is_none() {
                    continue;
                }
                let d = dist[i][j];
                if best.is_none_or(|(bd, _, _)| d < bd) {
                    best = Some((d, i, j));
                }
            }
        }
        let Some((d, i, j)) = best else { break };
        if d > max_distance {
            break;
        }
        // Merge j into i; the merged cluster's distance to k is the maximum.
        let moved = members[j].take().unwrap_or_default();
        if let Some(m) = members[i].as_mut() {
            m.extend(moved);
        }
        for k in 0..n {
            if k != i && k != j && members[k].is_some() {
                let merged = dist[i][k].max(dist[j][k]);
                dist[i][k] = merged;
                dist[k][i] = merged;
            }
        }
    }
    let mut clusters: Vec<Vec<usize>> = members
        .into_iter()
        .flatten()
        .filter(|m| m.len() >= 2)
        .map(|mut m| {
            m.sort_unstable();
            m
        })
        .collect();
    clusters.sort_by_key(|m| m[0]);
    clusters
        .into_iter()
        .map(|m| m.into_iter().map(|i| networks[i].clone()).collect())
        .collect()
}

/// Groups cells by their area (§3.4): one cluster per area, in the order of
/// the area's first cell; no distance check, no minimum size.
pub fn cluster_cells<K: Clone>(
    networks: &[Network<K>],
    area_of: impl Fn(&K) -> AreaKey,
) -> Vec<Vec<Network<K>>> {
    let mut groups: Vec<(AreaKey, Vec<Network<K>>)> = Vec::new();
    for net in networks {
        let area = area_of(&net.key);
        match groups.iter_mut().find(|(a, _)| *a == area) {
            Some((_, group)) => group.push(net.clone()),
            None => groups.push((area, vec![net.clone()])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(key: u32, lat: f64, lon: f64) -> Network<u32> {
        Network {
            key,
            lat,
            lon,
            radius: 0.0,
            age: 1000,
            signal: -100,
            score: 1.0,
            seen_today: false,
        }
    }

    fn keys(clusters: &[Vec<Network<u32>>]) -> Vec<Vec<u32>> {
        clusters
            .iter()
            .map(|c| c.iter().map(|n| n.key).collect())
            .collect()
    }

    #[test]
    fn small_inputs() {
        assert!(cluster_networks(&[net(1, 51.5, -0.1)], 500.0).is_empty());
        let two = [net(1, 51.5, -0.1), net(2, 51.5001, -0.1)];
        assert_eq!(keys(&cluster_networks(&two, 500.0)), vec![vec![1, 2]]);
        let far = [net(1, 51.5, -0.1), net(2, 51.505, -0.1)];
        assert!(cluster_networks(&far, 500.0).is_empty(), "556 m apart");
    }

    #[test]
    fn complete_linkage() {
        // T-W4: the outlier is dropped.
        let nets = [
            net(1, 51.5, -0.1),
            net(2, 51.5001, -0.1),
            net(3, 52.5, -0.1),
        ];
        assert_eq!(keys(&cluster_networks(&nets, 500.0)), vec![vec![1, 2]]);
        // A chain 0-300-600 m: single linkage would join all three, complete
        // linkage keeps the closest pair only (the 600 m pair is too far).
        let step = 300.0 / 111_250.0;
        let chain = [
            net(1, 51.5, -0.1),
            net(2, 51.5 + step, -0.1),
            net(3, 51.5 + 2.0 * step * 1.01, -0.1),
        ];
        assert_eq!(keys(&cluster_networks(&chain, 500.0)), vec![vec![1, 2]]);
        // Two groups, interleaved input order.
        let nets = [
            net(1, 48.85, 2.35),
            net(2, 51.5, -0.1),
            net(3, 48.8501, 2.35),
            net(4, 51.5001, -0.1),
            net(5, 48.8502, 2.35),
            net(6, 10.0, 10.0),
        ];
        assert_eq!(
            keys(&cluster_networks(&nets, 500.0)),
            vec![vec![1, 3, 5], vec![2, 4]]
        );
    }

    #[test]
    fn cells_by_area() {
        let nets = [net(1, 1.0, 1.0), net(2, 2.0, 2.0), net(3, 3.0, 3.0)];
        let area = |k: &u32| AreaKey {
            radio: crate::Radio::Gsm,
            mcc: 1,
            mnc: 1,
            lac: k % 2,
        };
        assert_eq!(keys(&cluster_cells(&nets, area)), vec![vec![1, 3], vec![2]]);
    }
}
