// The coverage map: the operator's base layer under this server's coverage
// tiles, the view kept in the URL hash (#zoom/lat/lon).
(function () {
  'use strict';
  var el = document.getElementById('map');
  if (!el || !window.L) { return; }

  function parseHash() {
    var parts = window.location.hash.replace(/^#/, '').split('/');
    if (parts.length !== 3) { return null; }
    var z = parseInt(parts[0], 10), lat = parseFloat(parts[1]), lon = parseFloat(parts[2]);
    if (isNaN(z) || isNaN(lat) || isNaN(lon)) { return null; }
    return { zoom: Math.max(1, Math.min(12, z)), center: [lat, lon] };
  }

  var start = parseHash() || { zoom: 2, center: [35.0, 9.0] };
  var map = L.map(el, {
    center: start.center,
    zoom: start.zoom,
    minZoom: 1,
    maxZoom: 12,
    maxBounds: [[-85.0511, -210], [85.0511, 210]],
    maxBoundsViscosity: 0.8
  });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');

  var base = el.getAttribute('data-map_base_url');
  if (base) {
    L.tileLayer(base, {
      maxZoom: 12,
      attribution: el.getAttribute('data-map_base_attribution') || ''
    }).addTo(map);
  }
  var tiles = el.getAttribute('data-map_tiles_url');
  if (tiles) {
    L.tileLayer(tiles, {
      maxNativeZoom: 11,
      maxZoom: 12,
      className: 'coverage-layer'
    }).addTo(map);
  }
  L.control.scale({ position: 'bottomleft' }).addTo(map);

  function writeHash() {
    var c = map.getCenter();
    var hash = '#' + map.getZoom() + '/' + c.lat.toFixed(4) + '/' + c.lng.toFixed(4);
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, '', hash);
    } else {
      window.location.hash = hash;
    }
  }
  map.on('moveend', writeHash);
  window.addEventListener('hashchange', function () {
    var view = parseHash();
    if (view) { map.setView(view.center, view.zoom); }
  });
}());
