// The statistics charts: each .chart element names its JSON sources
// (data-sources); every series is drawn over time with uPlot, sized to the
// element, redrawn when the window is resized.
(function () {
  'use strict';
  if (!window.uPlot) { return; }
  var COLORS = ['rgb(0,150,221)', 'rgb(240,136,30)', 'rgb(120,180,60)'];

  function short(v) {
    if (v == null) { return ''; }
    var a = Math.abs(v);
    if (a >= 1e6) { return (v / 1e6).toFixed(1).replace(/\.0$/, '') + 'M'; }
    if (a >= 1e3) { return (v / 1e3).toFixed(1).replace(/\.0$/, '') + 'k'; }
    return String(v);
  }

  function load(url) {
    return fetch(url, { credentials: 'same-origin' }).then(function (r) {
      if (!r.ok) { throw new Error(url + ': ' + r.status); }
      return r.json();
    });
  }

  // Series of several sources on one time axis (uPlot wants aligned columns).
  function align(seriesList) {
    var times = {};
    seriesList.forEach(function (s) { s.data.forEach(function (p) { times[p[0]] = true; }); });
    var xs = Object.keys(times).map(Number).sort(function (a, b) { return a - b; });
    var columns = [xs.map(function (t) { return t / 1000; })];
    seriesList.forEach(function (s) {
      var byTime = {};
      s.data.forEach(function (p) { byTime[p[0]] = p[1]; });
      columns.push(xs.map(function (t) { return t in byTime ? byTime[t] : null; }));
    });
    return columns;
  }

  function width(el) { return Math.max(240, el.clientWidth); }

  function draw(el, seriesList) {
    var points = seriesList.reduce(function (n, s) { return n + s.data.length; }, 0);
    el.setAttribute('data-series', String(seriesList.length));
    el.setAttribute('data-points', String(points));
    if (points === 0) {
      el.textContent = 'No data yet.';
      el.className += ' chart-empty';
      return;
    }
    var series = [{}];
    seriesList.forEach(function (s, i) {
      series.push({
        label: s.title,
        stroke: COLORS[i % COLORS.length],
        width: 2,
        points: { show: true, size: 5 },
        value: function (u, v) { return v == null ? '-' : v.toLocaleString('en'); }
      });
    });
    var opts = {
      width: width(el),
      height: 220,
      // Room on the right for the last month's label.
      padding: [12, 28, 0, 0],
      series: series,
      axes: [
        { values: '{MMM} {YYYY}' },
        { values: function (u, ticks) { return ticks.map(short); }, size: 60 }
      ],
      scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } }
    };
    var plot = new uPlot(opts, align(seriesList), el);
    el.setAttribute('data-drawn', 'true');
    window.addEventListener('resize', function () {
      plot.setSize({ width: width(el), height: 220 });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll('.chart[data-sources]'), function (el) {
    var urls = el.getAttribute('data-sources').split(/\s+/).filter(Boolean);
    Promise.all(urls.map(load)).then(function (answers) {
      var seriesList = [];
      answers.forEach(function (a) { seriesList = seriesList.concat(a.series); });
      draw(el, seriesList);
    }).catch(function (e) {
      el.textContent = 'The chart could not be loaded.';
      el.setAttribute('data-error', String(e));
    });
  });
}());
