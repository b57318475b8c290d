//! Geographic predicates: haversine distance, bounding boxes and polygons with holes.
//!
//! The arithmetic follows Qdrant's reference (`qdrant_client.local.geo`) operation for operation,
//! so a point exactly on a boundary falls on the same side in both.

use serde_json::Value;

/// Mean Earth radius in meters, as recommended by the IUGG (and used by Qdrant).
pub const MEAN_EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A latitude and longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
}

impl GeoPoint {
    /// Reads a payload value as a geo point: an object whose `lat` and `lon` are both numbers
    /// (other keys are ignored). Anything else is not a geo point and matches no geo condition.
    pub fn from_payload(v: &Value) -> Option<GeoPoint> {
        let obj = v.as_object()?;
        let lat = obj.get("lat")?.as_f64()?;
        let lon = obj.get("lon")?.as_f64()?;
        (lat.is_finite() && lon.is_finite()).then_some(GeoPoint { lat, lon })
    }
}

/// Great-circle distance in meters by the haversine formula.
pub fn haversine_m(a: GeoPoint, b: GeoPoint) -> f64 {
    let (lon1, lat1, lon2, lat2) = (
        a.lon.to_radians(),
        a.lat.to_radians(),
        b.lon.to_radians(),
        b.lat.to_radians(),
    );
    let dlon = lon2 - lon1;
    let dlat = lat2 - lat1;
    // `powf(2.0)` rather than `x * x`: the reference squares through `pow`, and the two can
    // differ in the last bit.
    let h = (dlat / 2.0).sin().powf(2.0) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powf(2.0);
    MEAN_EARTH_RADIUS_M * (2.0 * h.sqrt().asin())
}

/// A closed ring without its repeated closing point, as `(lat, lon)` pairs.
pub type Ring = Vec<(f64, f64)>;

/// Whether `p` lies inside `exterior` (its boundary excluded) and outside every hole (a point on
/// a hole's boundary is inside the hole).
pub(crate) fn in_polygon(p: GeoPoint, exterior: &Ring, interiors: &[Ring]) -> bool {
    let pt = (p.lat, p.lon);
    in_ring(pt, exterior, true) && !interiors.iter().any(|hole| in_ring(pt, hole, false))
}

/// Whether `p` lies inside `exterior` or on its boundary, and in no hole (a point on a hole's
/// boundary is kept). For shapes that tile the globe (regions), where a point on the border
/// of two must fall in one of them rather than in neither, unlike a filter's polygon.
pub fn in_closed_polygon(p: GeoPoint, exterior: &Ring, interiors: &[Ring]) -> bool {
    let pt = (p.lat, p.lon);
    in_ring(pt, exterior, false) && !interiors.iter().any(|hole| in_ring(pt, hole, true))
}

/// Even-odd ray casting; a point on an edge is inside unless `ignore_boundary`.
fn in_ring(pt: (f64, f64), ring: &Ring, ignore_boundary: bool) -> bool {
    let Some(&last) = ring.last() else {
        return false;
    };
    let mut inside = false;
    let mut j = last;
    for &i in ring {
        let (xi, yi) = i;
        let (xj, yj) = j;
        let on_boundary = (pt.1 * (xi - xj) + yi * (xj - pt.0) + yj * (pt.0 - xi) == 0.0)
            && ((xi - pt.0) * (xj - pt.0) <= 0.0)
            && ((yi - pt.1) * (yj - pt.1) <= 0.0);
        if on_boundary {
            return !ignore_boundary;
        }
        let crosses =
            ((yi > pt.1) != (yj > pt.1)) && (pt.0 < (xj - xi) * (pt.1 - yi) / (yj - yi) + xi);
        if crosses {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        let moscow = GeoPoint {
            lat: 55.7558,
            lon: 37.6173,
        };
        let london = GeoPoint {
            lat: 51.5074,
            lon: -0.1278,
        };
        let berlin = GeoPoint {
            lat: 52.52,
            lon: 13.405,
        };
        assert!(haversine_m(moscow, moscow) < 1.0);
        let ml = haversine_m(moscow, london);
        assert!((2_400_000.0..2_600_000.0).contains(&ml), "{ml}");
        let mb = haversine_m(moscow, berlin);
        assert!((1_600_000.0..1_650_000.0).contains(&mb), "{mb}");
        // One degree of latitude is 2πR/360.
        let one_degree = haversine_m(
            GeoPoint { lat: 0.0, lon: 0.0 },
            GeoPoint { lat: 1.0, lon: 0.0 },
        );
        let want = 2.0 * std::f64::consts::PI * MEAN_EARTH_RADIUS_M / 360.0;
        assert!((one_degree - want).abs() < 1e-6, "{one_degree} vs {want}");
    }

    #[test]
    fn polygon_with_a_hole() {
        let square: Ring = vec![(0.0, 0.0), (0.0, 10.0), (10.0, 10.0), (10.0, 0.0)];
        let hole: Ring = vec![(4.0, 4.0), (4.0, 6.0), (6.0, 6.0), (6.0, 4.0)];
        let at = |lat, lon| GeoPoint { lat, lon };
        assert!(in_polygon(
            at(2.0, 2.0),
            &square,
            std::slice::from_ref(&hole)
        ));
        assert!(!in_polygon(
            at(5.0, 5.0),
            &square,
            std::slice::from_ref(&hole)
        ));
        // On the hole's edge: inside the hole, so outside the polygon.
        assert!(!in_polygon(
            at(4.0, 5.0),
            &square,
            std::slice::from_ref(&hole)
        ));
        // On the exterior's edge: outside.
        assert!(!in_polygon(at(0.0, 5.0), &square, &[]));
        assert!(!in_polygon(at(11.0, 5.0), &square, &[]));
    }
}
