// The report's questions table, a page at a time, and its responses, unpacked from
// their gzip+base64 blocks only when one is opened. Text goes in through textContent
// only: a response holding markup shows as text.
(function () {
  'use strict';
  var PAGE = 100;
  var data = JSON.parse(document.getElementById('rows').textContent);
  var body = document.querySelector('#questions tbody');
  var filters = ['filter-run', 'filter-category', 'filter-status'].map(function (id) {
    return document.getElementById(id);
  });
  var page = 0;
  var unpacked = {};

  function responses(run) {
    if (!unpacked[run]) {
      var packed = document.getElementById('responses-' + run).textContent.trim();
      var bytes = Uint8Array.from(atob(packed), function (c) { return c.charCodeAt(0); });
      var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
      unpacked[run] = new Response(stream).text().then(JSON.parse);
    }
    return unpacked[run];
  }

  function fill(details) {
    if (details.dataset.filled) { return; }
    details.dataset.filled = '1';
    var runs = details.dataset.runs.split(' ');
    var index = details.dataset.index.split(' ');
    runs.forEach(function (run, i) {
      var pre = document.createElement('pre');
      pre.textContent = 'unpacking...';
      details.appendChild(pre);
      var shown = typeof DecompressionStream === 'undefined'
        ? Promise.reject(new Error('no DecompressionStream'))
        : responses(run);
      shown.then(function (texts) {
        pre.textContent = texts[Number(index[i])];
        pre.className = 'filled';
      }, function () {
        pre.textContent = 'This browser cannot unpack the responses (Chrome 80, Safari 16.4 ' +
          'and Firefox 113 can); `mmlupro-local report --format json` does not hold them, ' +
          'the results file does: one JSON record a line.';
      });
    });
  }

  document.addEventListener('toggle', function (event) {
    var target = event.target;
    if (target.classList && target.classList.contains('response') && target.open) {
      fill(target);
    }
  }, true);

  function cell(row, text, className) {
    var td = row.insertCell();
    td.textContent = text;
    if (className) { td.className = className; }
    return td;
  }

  function makeRow(r) {
    // run, index, id, category, answer, prediction, result, guess, level, summary
    var tr = document.createElement('tr');
    tr.dataset.category = r[3];
    tr.dataset.status = r[6];
    tr.id = 'q-' + r[0] + '-' + r[2];
    cell(tr, data.runs[r[0]]);
    cell(tr, String(r[2]));
    cell(tr, r[3]);
    cell(tr, r[4]);
    cell(tr, r[5] + (r[6] === 'guessed' ? ' (guess ' + r[7] + ')' : ''));
    cell(tr, r[6], r[6]);
    cell(tr, String(r[8]));
    var details = document.createElement('details');
    details.className = 'response';
    details.dataset.runs = String(r[0]);
    details.dataset.index = String(r[1]);
    var summary = document.createElement('summary');
    summary.textContent = r[9];
    details.appendChild(summary);
    tr.insertCell().appendChild(details);
    return tr;
  }

  function matching() {
    var run = filters[0].value, category = filters[1].value, result = filters[2].value;
    return data.rows.filter(function (r) {
      return (run === '' || String(r[0]) === run) && (category === '' || r[3] === category) &&
        (result === '' || r[6] === result);
    });
  }

  function render() {
    var rows = matching();
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.max(0, Math.min(page, pages - 1));
    body.replaceChildren.apply(body, rows.slice(page * PAGE, (page + 1) * PAGE).map(makeRow));
    document.getElementById('shown').textContent = rows.length;
    document.getElementById('page').textContent = 'page ' + (page + 1) + ' of ' + pages;
    document.getElementById('previous').disabled = page === 0;
    document.getElementById('next').disabled = page >= pages - 1;
    return rows;
  }

  filters.forEach(function (select) {
    select.addEventListener('change', function () { page = 0; render(); });
  });
  document.getElementById('previous').addEventListener('click', function () { page -= 1; render(); });
  document.getElementById('next').addEventListener('click', function () { page += 1; render(); });

  // #open=RUN:ID opens that question's response: a link to one answer
  function openFromHash() {
    var wanted = /^#open=(\d+):(\d+)$/.exec(location.hash);
    if (!wanted) { return; }
    filters.forEach(function (select) { select.value = ''; });
    var position = data.rows.findIndex(function (r) {
      return String(r[0]) === wanted[1] && String(r[2]) === wanted[2];
    });
    if (position < 0) { return; }
    page = Math.floor(position / PAGE);
    render();
    var row = document.getElementById('q-' + wanted[1] + '-' + wanted[2]);
    var details = row.querySelector('details');
    details.open = true;
    fill(details);
    row.scrollIntoView();
  }

  render();
  openFromHash();
  window.addEventListener('hashchange', openFromHash);
})();
