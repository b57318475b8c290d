//! Regions: a collection sharded by key whose points are placed by where they are (an
//! extension, `shard_region_field`).
//!
//! Each shard key of such a collection may be created with a region: a box, circle or
//! polygon, written as the geo condition that would select it (`{"geo_bounding_box": ...}`,
//! `{"geo_radius": ...}`, `{"geo_polygon": ...}`). A point goes to the first key, in key
//! order, whose region holds its location (the region's border included, so that regions
//! sharing a border leave no seam between them). A point in no region, or without a
//! location, goes to the key its write names or, when it names none, to the collection's one
//! key without a region; with neither, the write is refused. So every coordinator places a
//! point alike from the layout alone.
//!
//! A read whose filter requires the field to lie in a shape (a `geo_bounding_box`,
//! `geo_radius` or `geo_polygon` condition among its `must` conditions) reaches only the
//! keys whose regions meet that shape, and every key without a region (it holds the points
//! outside all regions, which the shape may contain). Whether a region meets a shape is
//! decided on their latitude and longitude bounds, widened by a margin against rounding:
//! a point the filter passes lies in both bounds, so no key that may hold a match is left
//! out; a region whose bounds meet the shape's without the shapes meeting is asked for
//! nothing it holds, at the cost of one shard call.

use super::keys::{KeyLayout, ShardKey};
use payload::{FieldCheck, GeoPoint};
use std::collections::BTreeMap;

/// The regions of a collection's keys (keys without a region are absent).
pub type RegionLayout = BTreeMap<ShardKey, Region>;

/// The most vertices a region's polygon may have, holes included: every write tests a
/// point against the regions.
pub const MAX_REGION_VERTICES: usize = 10_000;

/// A shard key's region.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// One of the `FieldCheck::Geo*` variants.
    shape: FieldCheck,
    /// As it was written (kept in the key's marker, and shown).
    json: serde_json::Value,
    /// The shape's bounds, worked out once: every geo-filtered read compares them.
    bounds: Bounds,
}

impl Region {
    /// Reads a region: `{"geo_bounding_box": ...}`, `{"geo_radius": ...}` or
    /// `{"geo_polygon": ...}`, validated as a filter's condition is, and not empty.
    pub fn from_json(v: &serde_json::Value) -> Result<Region, String> {
        let shape = payload::geo_shape_from_json(v, "region").map_err(|e| match e {
            payload::PayloadError::InvalidFilter { at, reason } => format!("{at}: {reason}"),
            other => other.to_string(),
        })?;
        match &shape {
            FieldCheck::GeoBoundingBox {
                top_left,
                bottom_right,
            } if top_left.lat < bottom_right.lat => {
                return Err(format!(
                    "region: top_left (lat {}) is south of bottom_right (lat {}): the box \
                     holds nothing",
                    top_left.lat, bottom_right.lat
                ))
            }
            FieldCheck::GeoRadius { radius, .. } if *radius <= 0.0 => {
                return Err(format!(
                    "region: a radius of {radius} m holds nothing: it must be positive"
                ))
            }
            FieldCheck::GeoPolygon {
                exterior,
                interiors,
            } => {
                let vertices = exterior.len() + interiors.iter().map(Vec::len).sum::<usize>();
                if vertices > MAX_REGION_VERTICES {
                    return Err(format!(
                        "region: a polygon of at most {MAX_REGION_VERTICES} vertices, not \
                         {vertices}"
                    ));
                }
            }
            _ => {}
        }
        let bounds = Bounds::of(&shape).unwrap_or(Bounds::EMPTY);
        Ok(Region {
            shape,
            json: v.clone(),
            bounds,
        })
    }

    /// The region as it was written.
    pub fn to_json(&self) -> &serde_json::Value {
        &self.json
    }

    /// Whether `p` lies in the region or on its border.
    pub fn contains(&self, p: GeoPoint) -> bool {
        match &self.shape {
            FieldCheck::GeoBoundingBox {
                top_left,
                bottom_right,
            } => {
                let lon_inside = if top_left.lon > bottom_right.lon {
                    p.lon >= top_left.lon || p.lon <= bottom_right.lon
                } else {
                    top_left.lon <= p.lon && p.lon <= bottom_right.lon
                };
                lon_inside && bottom_right.lat <= p.lat && p.lat <= top_left.lat
            }
            FieldCheck::GeoRadius { center, radius } => payload::haversine_m(p, *center) <= *radius,
            FieldCheck::GeoPolygon {
                exterior,
                interiors,
            } => payload::in_closed_polygon(p, exterior, interiors),
            _ => false,
        }
    }

    /// Whether the two regions hold the same locations (their shapes are equal, however
    /// their JSON was written).
    pub fn same_shape(&self, other: &Region) -> bool {
        self.shape == other.shape
    }

    /// A filter on `field` that every location the region holds passes (and others in its
    /// bounds, or just outside them, within `COVER_MARGIN_DEG`): the region's bounds as
    /// `geo_bounding_box` conditions, whose edges are strict, widened past them; a thin box
    /// wrapped round the antimeridian where a bound reaches ±180°, and a small circle on a
    /// pole a bound reaches, so that points on those lines pass too.
    pub fn covering_filter(&self, field: &str) -> serde_json::Value {
        const E: f64 = COVER_MARGIN_DEG;
        let b = &self.bounds;
        let (south, north) = ((b.lat.0 - E).max(-90.0), (b.lat.1 + E).min(90.0));
        let corner = |lat: f64, lon: f64| serde_json::json!({"lat": lat, "lon": lon});
        let bbox = |west: f64, east: f64| {
            serde_json::json!({"key": field, "geo_bounding_box": {
                "top_left": corner(north, west), "bottom_right": corner(south, east)}})
        };
        let mut should = Vec::new();
        let mut seam = false;
        for &(west, east) in &b.lon {
            let (west, east) = ((west - E).max(-180.0), (east + E).min(180.0));
            should.push(bbox(west, east));
            seam |= west <= -180.0 || east >= 180.0;
        }
        if seam {
            // The ±180° meridian itself, which a box's strict edge leaves out: a box
            // wrapped round it, east of 180 - E or west of -180 + E.
            should.push(bbox(180.0 - E, -180.0 + E));
        }
        for (pole, reached) in [(90.0, north >= 90.0), (-90.0, south <= -90.0)] {
            if reached && !b.lon.is_empty() {
                should.push(serde_json::json!({"key": field, "geo_radius": {
                    "center": corner(pole, 0.0), "radius": 1.0}}));
            }
        }
        serde_json::json!({ "should": should })
    }
}

/// How far past a region's bounds [`Region::covering_filter`] reaches, in degrees (about a
/// decimetre).
const COVER_MARGIN_DEG: f64 = 1e-6;

/// Latitude and longitude bounds of a shape: a latitude interval and one or two longitude
/// intervals (two where the shape crosses the antimeridian), all closed, in degrees.
#[derive(Debug, Clone, PartialEq)]
struct Bounds {
    lat: (f64, f64),
    lon: Vec<(f64, f64)>,
}

/// Degrees added on every side of a filter's bounds: the trigonometry of a circle's bounds
/// rounds, and a point on a bound must not fall outside it.
const MARGIN_DEG: f64 = 1e-9;

impl Bounds {
    const EMPTY: Bounds = Bounds {
        lat: (0.0, 0.0),
        lon: Vec::new(),
    };

    /// The bounds of a geo check; `None` for a check that is not geographic. A shape that
    /// holds nothing has empty bounds.
    fn of(check: &FieldCheck) -> Option<Bounds> {
        Some(match check {
            FieldCheck::GeoBoundingBox {
                top_left,
                bottom_right,
            } => {
                if top_left.lat < bottom_right.lat {
                    return Some(Bounds::EMPTY);
                }
                let lon = if top_left.lon > bottom_right.lon {
                    vec![(top_left.lon, 180.0), (-180.0, bottom_right.lon)]
                } else {
                    vec![(top_left.lon, bottom_right.lon)]
                };
                Bounds {
                    lat: (bottom_right.lat, top_left.lat),
                    lon,
                }
            }
            FieldCheck::GeoRadius { center, radius } => circle_bounds(*center, *radius),
            FieldCheck::GeoPolygon { exterior, .. } => {
                let (mut lat, mut lon) = ((f64::MAX, f64::MIN), (f64::MAX, f64::MIN));
                // A ring holds (lat, lon) pairs; a polygon is planar in them (no wrapping).
                for &(la, lo) in exterior {
                    lat = (lat.0.min(la), lat.1.max(la));
                    lon = (lon.0.min(lo), lon.1.max(lo));
                }
                if exterior.is_empty() {
                    return Some(Bounds::EMPTY);
                }
                Bounds {
                    lat,
                    lon: vec![lon],
                }
            }
            _ => return None,
        })
    }

    /// These bounds, `MARGIN_DEG` wider on every side.
    fn widened(mut self) -> Bounds {
        self.lat = (self.lat.0 - MARGIN_DEG, self.lat.1 + MARGIN_DEG);
        for l in &mut self.lon {
            *l = (l.0 - MARGIN_DEG, l.1 + MARGIN_DEG);
        }
        self
    }

    /// Whether the two bounds share a point.
    fn meets(&self, other: &Bounds) -> bool {
        let overlap = |a: (f64, f64), b: (f64, f64)| a.0 <= b.1 && b.0 <= a.1;
        overlap(self.lat, other.lat)
            && self
                .lon
                .iter()
                .any(|&a| other.lon.iter().any(|&b| overlap(a, b)))
    }
}

/// The bounds of the points less than `radius_m` metres (great-circle, as a `geo_radius`
/// filter measures) from `center`: the cap's latitude span, and its longitude span
/// `asin(sin a / cos lat)` either side (a the cap's angle), or every longitude when the
/// cap holds a pole.
fn circle_bounds(center: GeoPoint, radius_m: f64) -> Bounds {
    // Finite: JSON holds no infinities or NaNs.
    if radius_m <= 0.0 {
        return Bounds::EMPTY;
    }
    let angle = radius_m / payload::MEAN_EARTH_RADIUS_M * (1.0 + 1e-9) + 1e-12;
    let lat = center.lat.to_radians();
    let lat_span = (
        (center.lat - angle.to_degrees()).max(-90.0),
        (center.lat + angle.to_degrees()).min(90.0),
    );
    if angle + lat.abs() >= std::f64::consts::FRAC_PI_2 || angle >= std::f64::consts::PI {
        return Bounds {
            lat: lat_span,
            lon: vec![(-180.0, 180.0)],
        };
    }
    let half = (angle.sin() / lat.cos()).min(1.0).asin().to_degrees();
    let (lo, hi) = (center.lon - half, center.lon + half);
    let lon = if hi - lo >= 360.0 {
        vec![(-180.0, 180.0)]
    } else if lo < -180.0 {
        vec![(lo + 360.0, 180.0), (-180.0, hi)]
    } else if hi > 180.0 {
        vec![(lo, 180.0), (-180.0, hi - 360.0)]
    } else {
        vec![(lo, hi)]
    };
    Bounds { lat: lat_span, lon }
}

/// A point's location in the placement field's value: a geo point (`{"lat", "lon"}`, in
/// range), or an array of exactly one. `Ok(None)` for `null`; an error for anything else
/// (several locations cannot be placed in one region, and a longitude past ±180 would be
/// placed by its number while a `geo_radius` filter reads it round the globe).
pub fn location_of(v: &serde_json::Value) -> Result<Option<GeoPoint>, String> {
    let one = match v {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Array(items) if items.len() == 1 => &items[0],
        serde_json::Value::Array(items) => {
            return Err(format!(
                "one location places a point in a region, not {}",
                items.len()
            ))
        }
        other => other,
    };
    let p = GeoPoint::from_payload(one).ok_or_else(|| {
        format!("a geo point {{\"lat\": ..., \"lon\": ...}} places a point in a region, not {v}")
    })?;
    if !(-90.0..=90.0).contains(&p.lat) || !(-180.0..=180.0).contains(&p.lon) {
        return Err(format!(
            "lat {} and lon {} must lie in [-90, 90] and [-180, 180] to place a point in a \
             region",
            p.lat, p.lon
        ));
    }
    Ok(Some(p))
}

/// The keys of `layout` without a region.
pub fn free_keys<'a>(
    layout: &'a KeyLayout,
    regions: &'a RegionLayout,
) -> impl Iterator<Item = &'a ShardKey> {
    layout.keys().filter(|k| !regions.contains_key(*k))
}

/// The key a point at `location` (`None`: no location) goes to, `named` being the key its
/// write names, if any (see the module's rules). The error says why it cannot be placed.
pub fn key_for(
    layout: &KeyLayout,
    regions: &RegionLayout,
    location: Option<GeoPoint>,
    named: Option<&ShardKey>,
) -> Result<ShardKey, String> {
    let inside = location.and_then(|p| {
        regions
            .iter()
            .find(|(k, r)| layout.contains_key(*k) && r.contains(p))
            .map(|(k, _)| k)
    });
    let at = |p: GeoPoint| format!("(lat {}, lon {})", p.lat, p.lon);
    match (inside, named, location) {
        (Some(k), Some(n), Some(p)) if k != n => Err(format!(
            "its location {} lies in shard key {k}'s region, but the request names shard \
             key {n}",
            at(p)
        )),
        (Some(k), _, _) => Ok(k.clone()),
        (None, Some(n), Some(p)) if regions.contains_key(n) => Err(format!(
            "its location {} lies outside shard key {n}'s region, which the request names",
            at(p)
        )),
        (None, Some(n), _) => Ok(n.clone()),
        (None, None, _) => {
            let mut free = free_keys(layout, regions);
            match (free.next(), free.next()) {
                (Some(k), None) => Ok(k.clone()),
                (None, _) => Err(match location {
                    Some(p) => format!(
                        "its location {} lies in no key's region, and no shard key without a \
                         region takes such points",
                        at(p)
                    ),
                    None => "it has no location, and no shard key without a region takes \
                             such points"
                        .to_string(),
                }),
                (Some(_), Some(_)) => Err(format!(
                    "{}, and the collection has several shard keys without a region: the \
                     upsert must name one",
                    match location {
                        Some(p) => format!("its location {} lies in no key's region", at(p)),
                        None => "it has no location".to_string(),
                    }
                )),
            }
        }
    }
}

/// Cuts an upsert's points by the key their location in `field` places them under
/// ([`key_for`]), in first-met order of the keys. An error names the first point that
/// cannot be placed.
pub fn points_by_region(
    points: Vec<storage::PointWrite>,
    field: &str,
    layout: &KeyLayout,
    regions: &RegionLayout,
    named: Option<&ShardKey>,
) -> Result<Vec<(ShardKey, Vec<storage::PointWrite>)>, String> {
    super::keys::group_by_key(points, |i, p| {
        let location = match p.payload.get(field) {
            None => None,
            Some(v) => {
                location_of(v).map_err(|e| format!("points[{i}]: payload field `{field}`: {e}"))?
            }
        };
        key_for(layout, regions, location, named)
            .map_err(|e| format!("points[{i}] cannot be placed: {e}"))
    })
}

/// The keys a read filtered by `filter` must reach: `Some` when its `must` conditions
/// (nested filters among them included) require `field` to lie in one or more shapes, the
/// keys whose regions meet every such shape and the keys without a region; `None` when the
/// filter leaves the location free (every key is reached).
pub fn reached_keys(
    filter: &payload::Filter,
    field: &payload::KeyPath,
    layout: &KeyLayout,
    regions: &RegionLayout,
) -> Option<Vec<ShardKey>> {
    let mut shapes = Vec::new();
    pinned_shapes(filter, field, &mut shapes);
    if shapes.is_empty() {
        return None;
    }
    Some(
        layout
            .keys()
            .filter(|k| match regions.get(*k) {
                None => true,
                Some(r) => shapes.iter().all(|s| s.meets(&r.bounds)),
            })
            .cloned()
            .collect(),
    )
}

/// The bounds of every geo condition on `field` that `filter` requires to hold.
fn pinned_shapes(filter: &payload::Filter, field: &payload::KeyPath, out: &mut Vec<Bounds>) {
    use payload::Condition;
    for c in &filter.must {
        match c {
            Condition::Field(fc) if &fc.key == field => {
                if let Some(b) = Bounds::of(&fc.check) {
                    out.push(b.widened());
                }
            }
            Condition::Filter(inner) => pinned_shapes(inner, field, out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(s: &str) -> ShardKey {
        ShardKey::Keyword(s.into())
    }

    fn bbox(top: f64, left: f64, bottom: f64, right: f64) -> serde_json::Value {
        json!({"geo_bounding_box": {
            "top_left": {"lat": top, "lon": left},
            "bottom_right": {"lat": bottom, "lon": right}}})
    }

    fn pt(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint { lat, lon }
    }

    /// A point whose `loc` is `p`, for a filter to test.
    fn located(p: GeoPoint) -> payload::PlainPoint {
        payload::PlainPoint {
            id: index_core::PointId::Num(0),
            payload: json!({"loc": {"lat": p.lat, "lon": p.lon}})
                .as_object()
                .cloned(),
            vectors: Vec::new(),
        }
    }

    /// Europe and the Americas as boxes, Japan as a polygon, the Pacific across the
    /// antimeridian, and `rest` without a region.
    fn world() -> (KeyLayout, RegionLayout) {
        let regions: RegionLayout = [
            (
                k("eu"),
                Region::from_json(&bbox(72.0, -25.0, 34.0, 45.0)).unwrap(),
            ),
            (
                k("am"),
                Region::from_json(&bbox(72.0, -170.0, -56.0, -30.0)).unwrap(),
            ),
            (
                k("jp"),
                Region::from_json(&json!({"geo_polygon": {"exterior": {"points": [
                    {"lat": 30.0, "lon": 128.0}, {"lat": 46.0, "lon": 128.0},
                    {"lat": 46.0, "lon": 146.0}, {"lat": 30.0, "lon": 146.0},
                    {"lat": 30.0, "lon": 128.0}]}}}))
                .unwrap(),
            ),
            (
                k("pacific"),
                Region::from_json(&bbox(20.0, 170.0, -20.0, -170.0)).unwrap(),
            ),
        ]
        .into();
        let layout: KeyLayout = ["eu", "am", "jp", "pacific", "rest"]
            .iter()
            .enumerate()
            .map(|(i, n)| (k(n), vec![i % 3]))
            .collect();
        (layout, regions)
    }

    #[test]
    fn regions_refuse_shapes_that_hold_nothing_and_read_as_filters_do() {
        assert!(Region::from_json(&bbox(10.0, 0.0, 20.0, 5.0))
            .unwrap_err()
            .contains("south of"));
        assert!(Region::from_json(&json!({"geo_radius": {
            "center": {"lat": 0.0, "lon": 0.0}, "radius": 0.0}}))
        .unwrap_err()
        .contains("positive"));
        let e = Region::from_json(&bbox(95.0, 0.0, 20.0, 5.0)).unwrap_err();
        assert!(e.contains("region.geo_bounding_box.top_left.lat"), "{e}");
        assert!(Region::from_json(&json!({"geo_bounding_box": {}, "geo_radius": {}})).is_err());
        assert!(Region::from_json(&json!({"geo_shape": {}})).is_err());
        assert!(Region::from_json(&json!({})).is_err());
    }

    #[test]
    fn a_point_goes_to_the_first_region_holding_it_border_included_else_to_the_free_key() {
        let (layout, regions) = world();
        let place = |lat, lon| key_for(&layout, &regions, Some(pt(lat, lon)), None).unwrap();
        assert_eq!(place(52.5, 13.4), k("eu"));
        assert_eq!(place(40.7, -74.0), k("am"));
        assert_eq!(place(35.7, 139.7), k("jp"));
        // On the borders: a box's edge and a polygon's edge are inside.
        assert_eq!(place(34.0, 10.0), k("eu"));
        assert_eq!(place(30.0, 140.0), k("jp"));
        // Across the antimeridian.
        assert_eq!(place(0.0, 179.5), k("pacific"));
        assert_eq!(place(0.0, -179.5), k("pacific"));
        assert_eq!(place(-33.9, 151.2), k("rest"));
        assert_eq!(
            key_for(&layout, &regions, None, None).unwrap(),
            k("rest"),
            "no location: the free key"
        );
        // A named key must agree with the location.
        assert!(
            key_for(&layout, &regions, Some(pt(52.5, 13.4)), Some(&k("am")))
                .unwrap_err()
                .contains("lies in shard key eu's region")
        );
        assert!(
            key_for(&layout, &regions, Some(pt(-33.9, 151.2)), Some(&k("eu")))
                .unwrap_err()
                .contains("outside shard key eu's region")
        );
        assert_eq!(
            key_for(&layout, &regions, Some(pt(-33.9, 151.2)), Some(&k("rest"))).unwrap(),
            k("rest")
        );
        assert_eq!(
            key_for(&layout, &regions, None, Some(&k("eu"))).unwrap(),
            k("eu"),
            "a point without a location matches no geo filter: any named key may hold it"
        );
        // Without a free key, a point outside every region is refused; with two, it must
        // name one.
        let mut no_free = layout.clone();
        no_free.remove(&k("rest"));
        assert!(key_for(&no_free, &regions, Some(pt(-33.9, 151.2)), None)
            .unwrap_err()
            .contains("no shard key without a region"));
        let mut two_free = layout.clone();
        two_free.insert(k("rest2"), vec![0]);
        assert!(key_for(&two_free, &regions, None, None)
            .unwrap_err()
            .contains("must name one"));
        // A region whose key is gone places nothing.
        let mut no_eu = layout.clone();
        no_eu.remove(&k("eu"));
        assert_eq!(
            key_for(&no_eu, &regions, Some(pt(52.5, 13.4)), None).unwrap(),
            k("rest")
        );
    }

    #[test]
    fn locations_are_one_geo_point() {
        assert_eq!(
            location_of(&json!({"lat": 1.0, "lon": 2.0})).unwrap(),
            Some(pt(1.0, 2.0))
        );
        assert_eq!(
            location_of(&json!([{"lat": 1.0, "lon": 2.0}])).unwrap(),
            Some(pt(1.0, 2.0))
        );
        assert_eq!(location_of(&json!(null)).unwrap(), None);
        assert!(
            location_of(&json!([{"lat": 1.0, "lon": 2.0}, {"lat": 3.0, "lon": 4.0}]))
                .unwrap_err()
                .contains("not 2")
        );
        assert!(location_of(&json!("berlin")).is_err());
        assert!(location_of(&json!({"lat": 1.0})).is_err());
        // Out of range: placed by its number, a box would take it; a circle reads it round
        // the globe.
        assert!(location_of(&json!({"lat": 0.0, "lon": 200.0}))
            .unwrap_err()
            .contains("must lie in"));
        assert!(location_of(&json!({"lat": -91.0, "lon": 0.0})).is_err());
        assert_eq!(
            location_of(&json!({"lat": 90.0, "lon": -180.0})).unwrap(),
            Some(pt(90.0, -180.0))
        );
    }

    /// Every location a region holds passes its covering filter, on its borders, on the
    /// antimeridian and on the poles included; a location far from it does not.
    #[test]
    fn a_covering_filter_passes_every_location_its_region_holds() {
        let regions = [
            Region::from_json(&bbox(72.0, -25.0, 34.0, 45.0)).unwrap(),
            Region::from_json(&bbox(20.0, 170.0, -20.0, -170.0)).unwrap(),
            Region::from_json(&bbox(90.0, -180.0, 60.0, 180.0)).unwrap(),
            // Boxes wrapping round almost the whole globe, their edges a hair from ±180.
            Region::from_json(&bbox(10.0, 180.0, -10.0, 179.999_998_5)).unwrap(),
            Region::from_json(&bbox(10.0, -179.999_998_5, -10.0, 180.0)).unwrap(),
            Region::from_json(&json!({"geo_radius": {
                "center": {"lat": 0.0, "lon": 179.5}, "radius": 300_000.0}}))
            .unwrap(),
            Region::from_json(&json!({"geo_radius": {
                "center": {"lat": -88.0, "lon": 10.0}, "radius": 500_000.0}}))
            .unwrap(),
            Region::from_json(&json!({"geo_polygon": {"exterior": {"points": [
                {"lat": 30.0, "lon": 128.0}, {"lat": 46.0, "lon": 128.0},
                {"lat": 46.0, "lon": 146.0}, {"lat": 30.0, "lon": 128.0}]}}}))
            .unwrap(),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        // Random points, and the lines regions stop at.
        let mut probes: Vec<GeoPoint> = (0..20_000)
            .map(|_| pt(next() * 180.0 - 90.0, next() * 360.0 - 180.0))
            .collect();
        for lat in [-90.0, -60.0, -20.0, 0.0, 20.0, 34.0, 46.0, 60.0, 72.0, 90.0] {
            for lon in [
                -180.0, -170.0, -25.0, 0.0, 45.0, 128.0, 146.0, 170.0, 179.5, 180.0,
            ] {
                probes.push(pt(lat, lon));
            }
        }
        for (i, r) in regions.iter().enumerate() {
            let filter = payload::Filter::from_json(&r.covering_filter("loc")).unwrap();
            let (mut held, mut passed) = (0, 0);
            for p in &probes {
                let doc = located(*p);
                let passes = filter.matches(&doc);
                passed += usize::from(passes);
                if r.contains(*p) {
                    held += 1;
                    assert!(
                        passes,
                        "region {i} holds {p:?}, its covering filter refuses it"
                    );
                }
            }
            assert!(held > 0, "region {i} holds no probe");
            assert!(
                passed < probes.len(),
                "region {i}'s filter passes everything"
            );
        }
    }

    fn reached(filter: serde_json::Value) -> Option<Vec<String>> {
        let (layout, regions) = world();
        let f = payload::Filter::from_json(&filter).unwrap();
        let field = payload::KeyPath::parse("loc").unwrap();
        reached_keys(&f, &field, &layout, &regions)
            .map(|ks| ks.iter().map(ToString::to_string).collect())
    }

    fn ks(names: &[&str]) -> Option<Vec<String>> {
        let mut v: Vec<String> = names.iter().map(ToString::to_string).collect();
        v.sort();
        Some(v)
    }

    #[test]
    fn geo_filters_reach_the_regions_they_meet_and_the_free_key() {
        let radius = |lat: f64, lon: f64, m: f64| json!({"key": "loc", "geo_radius": {"center": {"lat": lat, "lon": lon}, "radius": m}});
        // Berlin, 100 km: Europe only.
        assert_eq!(
            reached(json!({"must": [radius(52.5, 13.4, 100_000.0)]})),
            ks(&["eu", "rest"])
        );
        // Istanbul (41°N, 29°E), 2,000 km: reaches Europe but not Japan or the Americas.
        assert_eq!(
            reached(json!({"must": [radius(41.0, 29.0, 2_000_000.0)]})),
            ks(&["eu", "rest"])
        );
        // 50 km around 179.9°E: both sides of the antimeridian, the Pacific only.
        assert_eq!(
            reached(json!({"must": [radius(0.0, 179.9, 50_000.0)]})),
            ks(&["pacific", "rest"])
        );
        // Near the pole a circle spans every longitude: 2,500 km from 89°N reaches 66.5°N
        // all round, Europe's and the Americas' northern edges (72°N) included.
        assert_eq!(
            reached(json!({"must": [radius(89.0, 0.0, 500_000.0)]})),
            ks(&["rest"])
        );
        assert_eq!(
            reached(json!({"must": [radius(89.0, 0.0, 2_500_000.0)]})),
            ks(&["am", "eu", "rest"])
        );
        // A box in the Atlantic between the regions reaches only the free key; a box on
        // Europe's edge (its border is in the region) reaches Europe.
        assert_eq!(
            reached(json!({"must": [{"key": "loc", "geo_bounding_box": {
                "top_left": {"lat": 50.0, "lon": -29.0}, "bottom_right": {"lat": 40.0, "lon": -26.0}}}]})),
            ks(&["rest"])
        );
        assert_eq!(
            reached(json!({"must": [{"key": "loc", "geo_bounding_box": {
                "top_left": {"lat": 50.0, "lon": -29.0}, "bottom_right": {"lat": 40.0, "lon": -25.0}}}]})),
            ks(&["eu", "rest"])
        );
        // A box across the antimeridian.
        assert_eq!(
            reached(json!({"must": [{"key": "loc", "geo_bounding_box": {
                "top_left": {"lat": 10.0, "lon": 175.0}, "bottom_right": {"lat": -10.0, "lon": -175.0}}}]})),
            ks(&["pacific", "rest"])
        );
        // A polygon over Tokyo, nested one level down; two shapes must both be met.
        let tokyo = json!({"key": "loc", "geo_polygon": {"exterior": {"points": [
            {"lat": 35.0, "lon": 139.0}, {"lat": 36.0, "lon": 139.0}, {"lat": 36.0, "lon": 140.0},
            {"lat": 35.0, "lon": 139.0}]}}});
        assert_eq!(
            reached(json!({"must": [{"must": [tokyo.clone()]}]})),
            ks(&["jp", "rest"])
        );
        assert_eq!(
            reached(json!({"must": [tokyo.clone(), radius(52.5, 13.4, 100_000.0)]})),
            ks(&["rest"])
        );
        // Conditions that do not pin the location: every key.
        assert_eq!(reached(json!({"should": [tokyo.clone()]})), None);
        assert_eq!(reached(json!({"must_not": [tokyo]})), None);
        assert_eq!(
            reached(json!({"must": [{"key": "city", "match": {"value": "x"}}]})),
            None
        );
        // A shape that holds nothing reaches only the free key.
        assert_eq!(
            reached(json!({"must": [radius(52.5, 13.4, -1.0)]})),
            ks(&["rest"])
        );
    }

    /// Points placed at random: a filter's reached keys always include the key of every
    /// point it passes (the property routing relies on), for circles and boxes of every
    /// size, anywhere.
    #[test]
    fn no_point_a_filter_passes_is_on_a_key_it_does_not_reach() {
        let (layout, regions) = world();
        let field = payload::KeyPath::parse("loc").unwrap();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let points: Vec<(GeoPoint, ShardKey)> = (0..4_000)
            .map(|_| {
                let p = pt(next() * 180.0 - 90.0, next() * 360.0 - 180.0);
                (p, key_for(&layout, &regions, Some(p), None).unwrap())
            })
            .collect();
        let mut checked = 0;
        for round in 0..300 {
            let (lat, lon) = (next() * 180.0 - 90.0, next() * 360.0 - 180.0);
            let filter = if round % 2 == 0 {
                let m = 10f64.powf(3.0 + next() * 4.0);
                json!({"must": [{"key": "loc", "geo_radius": {
                    "center": {"lat": lat, "lon": lon}, "radius": m}}]})
            } else {
                let (h, w) = (next() * 40.0, next() * 80.0);
                let right = lon + w;
                let right = if right > 180.0 { right - 360.0 } else { right };
                json!({"must": [{"key": "loc", "geo_bounding_box": {
                    "top_left": {"lat": lat.max(-90.0 + h), "lon": lon},
                    "bottom_right": {"lat": lat.max(-90.0 + h) - h, "lon": right}}}]})
            };
            let f = payload::Filter::from_json(&filter).unwrap();
            let reached = reached_keys(&f, &field, &layout, &regions).unwrap();
            for (p, key) in &points {
                let doc = located(*p);
                if f.matches(&doc) {
                    checked += 1;
                    assert!(
                        reached.contains(key),
                        "{filter} passes {p:?} on key {key}, but reaches only {reached:?}"
                    );
                }
            }
        }
        assert!(checked > 1_000, "only {checked} matches checked");
    }
}
