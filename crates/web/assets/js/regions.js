// The region table: sort by a column heading, filter by name. Cells carry
// their sort value in data-order.
(function () {
  'use strict';
  var table = document.getElementById('region-stats');
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var search = document.getElementById('region-search');
  var count = document.getElementById('region-count');

  function value(row, index, numeric) {
    var order = row.cells[index].getAttribute('data-order') || '';
    return numeric ? Number(order) : order;
  }

  function sortBy(index) {
    var th = headers[index];
    var numeric = th.getAttribute('data-type') === 'num';
    var current = th.getAttribute('aria-sort');
    // A new column starts with its most useful order: numbers high to low.
    var descending = current ? current === 'ascending' : numeric;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, index, numeric), y = value(b, index, numeric);
      var c = x < y ? -1 : (x > y ? 1 : 0);
      if (c === 0) { c = value(a, 0, false) < value(b, 0, false) ? -1 : 1; return c; }
      return descending ? -c : c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
  }

  headers.forEach(function (th, index) {
    var button = th.querySelector('button');
    if (button) { button.addEventListener('click', function () { sortBy(index); }); }
  });

  function filter() {
    var needle = search.value.trim().toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var match = !needle || row.cells[0].textContent.toLowerCase().indexOf(needle) !== -1;
      row.hidden = !match;
      if (match) { shown += 1; }
    });
    if (count) { count.textContent = shown + (shown === 1 ? ' region' : ' regions'); }
  }
  if (search) { search.addEventListener('input', filter); }
}());
