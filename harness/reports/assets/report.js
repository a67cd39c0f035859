/* dynharness run report: timeline, latency, throughput and sibling charts on <canvas>, no libraries.
   Data: the JSON in #run-data (harness/reports/html.py build_run_model). */
(function () {
  'use strict';
  var T0 = performance.now(), TIMES = {};

  function loadData() {  // html.py embeds JSON, or gzip+base64 of it for big runs
    var el = document.getElementById('run-data');
    if (el.dataset.encoding !== 'gzip-base64') return Promise.resolve(JSON.parse(el.textContent));
    var bin = atob(el.textContent.trim()), bytes = new Uint8Array(bin.length);
    for (var b = 0; b < bin.length; b++) bytes[b] = bin.charCodeAt(b);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text().then(JSON.parse);
  }
  loadData().then(main, function (e) {
    document.body.insertAdjacentHTML('afterbegin', '<p style="color:#a12a25;padding:8px 24px">This browser cannot unpack the report data: ' + String(e) + '</p>');
  });

  function main(M) {
  TIMES.parse = performance.now() - T0;
  var O = M.ops, N = O.t0.length;
  (function decode() {  // html.py sends compact columns: t0 and duration in 0.1 ms, completion index as an offset
    var t0 = new Float64Array(N), t1 = new Float64Array(N), comp = new Int32Array(N);
    for (var k = 0; k < N; k++) {
      t0[k] = O.t0[k] / 10; t1[k] = (O.t0[k] + O.dur[k]) / 10; comp[k] = O.dcomp[k] < 0 ? -1 : O.inv[k] + O.dcomp[k];
    }
    O.t0 = t0; O.t1 = t1; O.comp = comp;
  })();
  var OUT_COL = ['#3f9e5a', '#d9534f', '#e0a526', '#8a8f98'];
  var OUT_RGB = [[63, 158, 90], [217, 83, 79], [224, 165, 38], [138, 143, 152]];
  var RANK = [0, 3, 2, 1];  // ok < open < info < fail: what a pixel shows when several ops share it
  var NODE_COL = ['#2f6fdf', '#d9534f', '#3f9e5a', '#9c4fd6', '#e0a526', '#17a2b8', '#e83e8c', '#6c757d', '#795548', '#20c997'];
  var FAULT_COL = {partition: 'rgba(217,83,79,0.13)', clock: 'rgba(47,111,223,0.13)', crash: 'rgba(30,30,30,0.13)',
    pause: 'rgba(156,79,214,0.13)', link: 'rgba(224,165,38,0.16)', wipe: 'rgba(30,30,30,0.2)'};
  var END = Math.max(M.end_ms || 0, 1);
  var view = {t0: 0, t1: END};
  var keyFilter = -1, colourBy = 'outcome', highlight = null;
  var listeners = [];
  var tip = document.getElementById('tip');

  function faultCol(kind) { return FAULT_COL[kind] || 'rgba(120,120,120,0.13)'; }
  function nodeCol(i) { return NODE_COL[i % NODE_COL.length]; }
  function setView(a, b) {
    var span = Math.max(b - a, 0.05);
    if (span > END * 1.05) { a = 0; span = END; }
    a = Math.max(-END * 0.02, Math.min(a, END - span * 0.1));
    view = {t0: a, t1: a + span};
    listeners.forEach(function (f) { f(); });
  }
  function decimalsFor(stepMs) {  // enough decimals (of seconds) that ticks one step apart read differently
    return Math.max(0, Math.min(6, -Math.floor(Math.log10(stepMs / 1000) + 1e-9)));
  }
  function fmtT(ms, stepMs) { return (ms / 1000).toFixed(decimalsFor(stepMs)) + 's'; }
  function lowerBound(arr, idxs, v, lo, hi) { // first position p in idxs[lo..hi) with arr[idxs[p]] >= v
    while (lo < hi) { var mid = (lo + hi) >> 1; if (arr[idxs[mid]] < v) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function niceTicks(a, b, n) {  // at most ~n ticks over [a, b], a step from the 1-2-5 series; out.step is it
    var span = Math.max(b - a, 1e-9), step = Math.pow(10, Math.floor(Math.log10(span / n)));
    [1, 2, 5, 10].some(function (m) { if (span / (step * m) <= n) { step *= m; return true; } return false; });
    var out = [], k0 = Math.ceil(a / step);
    for (var k = k0; k * step <= b && k - k0 < 100; k++) out.push(k * step);  // k * step: no drift from adding steps
    out.step = step;
    return out;
  }

  /* ---------- canvas helper ---------- */
  function setupCanvas(cv, cssH) {
    var dpr = window.devicePixelRatio || 1, w = cv.parentElement.clientWidth || 800;
    cv.style.height = cssH + 'px';
    cv.width = Math.round(w * dpr); cv.height = Math.round(cssH * dpr);
    var g = cv.getContext('2d'); g.setTransform(dpr, 0, 0, dpr, 0, 0);
    return {g: g, w: w, h: cssH};
  }

  /* ---------- indexes ---------- */
  var rowOf = new Map();
  for (var i = 0; i < N; i++) { rowOf.set(O.inv[i], i); if (O.comp[i] >= 0) rowOf.set(O.comp[i], i); }
  // Rows of the timeline: one per session (a worker keeps its row across process ids), or one per
  // process as in Jepsen's timeline (a new row after every info). laneOf[r] is op r's row.
  var lanes, laneNames, laneOf, laneH;
  function buildLanes(by) {
    laneOf = new Int32Array(N);
    if (by === 'process') {
      var ids = new Map(), procs = [];
      for (var r = 0; r < N; r++) { var pid = M.lanes[O.lane[r]] === 'final' ? 'final' : O.proc[r]; if (!ids.has(pid)) { ids.set(pid, 0); procs.push(pid); } }
      procs.sort(function (a, b) { return a === 'final' ? 1 : b === 'final' ? -1 : a - b; });
      procs.forEach(function (pid, k) { ids.set(pid, k); });
      laneNames = procs.map(String);
      for (r = 0; r < N; r++) laneOf[r] = ids.get(M.lanes[O.lane[r]] === 'final' ? 'final' : O.proc[r]);
    } else {
      laneNames = M.lanes.slice();
      for (r = 0; r < N; r++) laneOf[r] = O.lane[r];
    }
    lanes = laneNames.map(function () { return []; });
    for (r = 0; r < N; r++) lanes[laneOf[r]].push(r);
    laneH = Math.max(3, Math.min(22, Math.floor(520 / Math.max(1, lanes.length))));
  }
  buildLanes('session');
  var allRows = new Array(N); for (i = 0; i < N; i++) allRows[i] = i; // invoke order = t0 order
  TIMES.index = performance.now() - T0;

  /* ---------- timeline ---------- */
  var tl = document.getElementById('tl-canvas');
  var LEFT = 64, TOP = 22, NEM_H = 18;
  var tlGeom = null;
  function xOf(t, w) { return LEFT + (t - view.t0) / (view.t1 - view.t0) * (w - LEFT - 8); }
  function tOf(x, w) { return view.t0 + (x - LEFT) / (w - LEFT - 8) * (view.t1 - view.t0); }

  function drawTimeline() {
    var hgt = TOP + NEM_H + 6 + lanes.length * laneH + 8;
    var c = setupCanvas(tl, hgt), g = c.g, w = c.w;
    tlGeom = c;
    g.clearRect(0, 0, w, hgt);
    g.font = '11px system-ui, sans-serif'; g.textBaseline = 'middle';
    // axis
    g.fillStyle = '#5f6b7a'; g.strokeStyle = '#eceff3';
    var ticks = niceTicks(view.t0, view.t1, Math.max(2, Math.floor((w - LEFT) / 90))), labels = [];
    ticks.forEach(function (t) {
      var x = xOf(t, w); g.beginPath(); g.moveTo(x, TOP - 4); g.lineTo(x, hgt); g.stroke();
      if (x < w - 40) { labels.push(fmtT(t, ticks.step)); g.fillText(labels[labels.length - 1], x + 2, 9); }
    });
    tl.dataset.ticks = JSON.stringify(labels);
    // fault windows
    M.windows.forEach(function (win) {
      var x0 = Math.max(LEFT, xOf(win.start, w)), x1 = Math.min(w - 8, xOf(win.end, w));
      if (x1 < LEFT || x0 > w) return;
      g.fillStyle = faultCol(win.kind); g.fillRect(x0, TOP, Math.max(2, x1 - x0), hgt - TOP);
      g.fillStyle = win.failed ? '#a12a25' : '#1d2330';
      g.fillText(win.kind + (win.failed ? ' (failed)' : ''), x0 + 3, TOP + NEM_H / 2);
    });
    g.fillStyle = '#1d2330'; g.fillText('nemesis', 4, TOP + NEM_H / 2);
    // lanes
    var drawn = 0, hl = 0, y0 = TOP + NEM_H + 6, W = Math.ceil(w), bins = new Int16Array(W + 1);
    var byNode = colourBy === 'node';
    for (var L = 0; L < lanes.length; L++) {
      var y = y0 + L * laneH, idx = lanes[L];
      bins.fill(0);
      if (L % 2 === 0) { g.fillStyle = 'rgba(0,0,0,0.025)'; g.fillRect(LEFT, y, w - LEFT, laneH); }
      if (laneH >= 9) { g.fillStyle = '#5f6b7a'; g.fillText(laneNames[L], 4, y + laneH / 2); }
      var p = Math.max(0, lowerBound(O.t0, idx, view.t0, 0, idx.length) - 1);
      for (; p < idx.length; p++) {
        var r = idx[p];
        if (O.t0[r] > view.t1) break;
        if (O.t1[r] < view.t0) continue;
        if (keyFilter >= 0 && O.key[r] !== keyFilter) continue;
        var x0 = Math.max(LEFT, xOf(O.t0[r], w)), x1 = Math.min(w - 8, xOf(O.t1[r], w));
        var bw = Math.max(1, x1 - x0);
        drawn++;
        if (bw < 2) {  // narrow ops: one pixel column each, the most telling outcome wins (fail > info > open > ok)
          var code = (byNode ? O.node[r] : O.type[r]) + 1;
          for (var xx = x0 | 0, xe = Math.min(W, x1 | 0); xx <= xe; xx++) {
            var prev = bins[xx];
            if (!prev || (!byNode && RANK[code - 1] > RANK[prev - 1])) bins[xx] = code;
          }
          continue;
        }
        g.fillStyle = byNode ? nodeCol(O.node[r]) : OUT_COL[O.type[r]];
        g.globalAlpha = highlight && !highlight.has(r) ? 0.35 : 1;
        g.fillRect(x0, y + 1, bw, laneH - 2);
        if (bw > 46 && laneH >= 11) {
          g.fillStyle = '#fff'; g.save(); g.beginPath(); g.rect(x0, y, bw, laneH); g.clip();
          g.fillText(M.fs[O.f[r]] + ' ' + O.value[r] + ' @' + M.nodes[O.node[r]], x0 + 3, y + laneH / 2); g.restore();
        }
      }
      g.globalAlpha = highlight ? 0.35 : 1;
      for (var bx = LEFT; bx <= W;) {  // runs of equal pixel columns as one rectangle
        var c = bins[bx];
        if (!c) { bx++; continue; }
        var s0 = bx;
        while (bx <= W && bins[bx] === c) bx++;
        g.fillStyle = byNode ? nodeCol(c - 1) : OUT_COL[c - 1];
        g.fillRect(s0, y + 1, bx - s0, laneH - 2);
      }
    }
    g.globalAlpha = 1;
    if (highlight) {
      highlight.forEach(function (r) {
        if (O.t1[r] < view.t0 || O.t0[r] > view.t1) return;
        var y = y0 + laneOf[r] * laneH, x0 = xOf(O.t0[r], w), x1 = xOf(O.t1[r], w);
        g.strokeStyle = '#111'; g.lineWidth = 2; g.strokeRect(x0 - 1, y - 0.5, Math.max(3, x1 - x0) + 2, laneH + 1);
        g.fillStyle = '#111'; g.beginPath(); g.moveTo(x0, y - 1); g.lineTo(x0 - 4, y - 7); g.lineTo(x0 + 4, y - 7); g.fill();
        hl++;
      });
      g.lineWidth = 1;
    }
    tl.dataset.drawn = String(drawn); tl.dataset.highlighted = String(hl);
    document.getElementById('tl-range').textContent = fmtT(view.t0, ticks.step / 10) + ' – ' + fmtT(view.t1, ticks.step / 10) + ' · ' + drawn + ' ops drawn';
  }

  function opAt(mx, my) {
    if (!tlGeom) return null;
    var y0 = TOP + NEM_H + 6, L = Math.floor((my - y0) / laneH);
    if (my >= TOP && my < TOP + NEM_H) {
      var t = tOf(mx, tlGeom.w);
      for (var k = 0; k < M.windows.length; k++) if (M.windows[k].start <= t && t <= M.windows[k].end) return {win: M.windows[k]};
      return null;
    }
    if (L < 0 || L >= lanes.length) return null;
    var idx = lanes[L], t2 = tOf(mx, tlGeom.w), tol = 3 * (view.t1 - view.t0) / tlGeom.w;
    var p = lowerBound(O.t0, idx, t2 - tol, 0, idx.length);
    for (var q = Math.max(0, p - 2); q < Math.min(idx.length, p + 3); q++) {
      var r = idx[q];
      if (keyFilter >= 0 && O.key[r] !== keyFilter) continue;
      if (O.t0[r] - tol <= t2 && t2 <= O.t1[r] + tol) return {row: r};
    }
    return null;
  }
  function describe(r) {
    var lines = ['op ' + O.inv[r] + (O.comp[r] >= 0 ? ' → ' + O.comp[r] : ' (never completed)'),
      M.fs[O.f[r]] + ' ' + (O.key[r] >= 0 ? M.keys[O.key[r]] : '') + ' → ' + M.outcomes[O.type[r]],
      'value: ' + (O.value[r] || '-'), 'node: ' + M.nodes[O.node[r]] + '   process: ' + O.proc[r] + '   session: ' + M.lanes[O.lane[r]],
      'invoked ' + (O.t0[r] / 1000).toFixed(3) + ' s, took ' + (O.t1[r] - O.t0[r]).toFixed(1) + ' ms'];
    if (O.sib[r] >= 0) lines.push('siblings: ' + O.sib[r]);
    var full = M.proof_ops[String(O.comp[r])];
    if (full && full.error) lines.push('error: ' + full.error);
    return lines.join('\n');
  }
  tl.addEventListener('mousemove', function (e) {
    var rc = tl.getBoundingClientRect(), hit = opAt(e.clientX - rc.left, e.clientY - rc.top);
    if (drag) { var dt = (e.clientX - drag.x) / (tlGeom.w - LEFT - 8) * (drag.v.t1 - drag.v.t0); setView(drag.v.t0 - dt, drag.v.t1 - dt); tip.style.display = 'none'; return; }
    if (!hit) { tip.style.display = 'none'; return; }
    tip.textContent = hit.win ? (hit.win.kind + (hit.win.failed ? ' (FAILED)' : '') + ' ' + (hit.win.start / 1000).toFixed(2) + '–' + (hit.win.end / 1000).toFixed(2) + ' s\n' + (hit.win.detail || '') + (hit.win.mechanism ? '\nvia ' + hit.win.mechanism : '')) : describe(hit.row);
    tip.style.display = 'block';
    tip.style.left = Math.min(window.innerWidth - 490, e.clientX + 14) + 'px'; tip.style.top = (e.clientY + 14) + 'px';
  });
  tl.addEventListener('mouseleave', function () { tip.style.display = 'none'; drag = null; });
  var drag = null;
  tl.addEventListener('mousedown', function (e) { drag = {x: e.clientX, v: {t0: view.t0, t1: view.t1}}; });
  window.addEventListener('mouseup', function () { drag = null; });
  tl.addEventListener('wheel', function (e) {
    e.preventDefault();
    var rc = tl.getBoundingClientRect(), t = tOf(e.clientX - rc.left, tlGeom.w), f = Math.pow(1.2, e.deltaY / 100);
    setView(t - (t - view.t0) * f, t + (view.t1 - t) * f);
  }, {passive: false});
  tl.addEventListener('dblclick', function () { setView(0, END); });
  document.getElementById('tl-reset').addEventListener('click', function () { setView(0, END); });
  document.querySelectorAll('.tl-window').forEach(function (b) {
    b.addEventListener('click', function () {
      var a = +b.dataset.start, z = +b.dataset.end, pad = Math.max(200, (z - a) * 0.1); setView(a - pad, z + pad);
    });
  });
  document.getElementById('tl-key').addEventListener('change', function (e) { keyFilter = +e.target.value; drawTimeline(); });
  document.getElementById('tl-colour').addEventListener('change', function (e) { colourBy = e.target.value; legend(); drawTimeline(); });
  document.getElementById('tl-rows').addEventListener('change', function (e) { buildLanes(e.target.value); drawTimeline(); });
  function legend() {
    var el = document.getElementById('tl-legend'), items = colourBy === 'node'
      ? M.nodes.map(function (n, i) { return [nodeCol(i), n]; })
      : M.outcomes.map(function (o, i) { return [OUT_COL[i], o]; });
    Object.keys(FAULT_COL).forEach(function (k) { if (M.windows.some(function (w) { return w.kind === k; })) items.push([FAULT_COL[k].replace(/0\.1\d\)/, '0.45)'), k + ' window']); });
    el.innerHTML = '';
    items.forEach(function (it) { var s = document.createElement('span'), i2 = document.createElement('i'); i2.style.background = it[0]; s.appendChild(i2); s.appendChild(document.createTextNode(it[1])); el.appendChild(s); });
  }

  /* ---------- latency & throughput ---------- */
  var okLat = [];
  for (i = 0; i < N; i++) if (O.type[i] === 0) okLat.push(O.t1[i] - O.t0[i]);
  okLat.sort(function (a, b) { return a - b; });
  function q(p) { return okLat.length ? okLat[Math.min(okLat.length - 1, Math.max(0, Math.ceil(p * okLat.length) - 1))] : null; }
  var latMax = 1, latMin = 1e9;
  for (i = 0; i < N; i++) if (O.type[i] < 3) { var d = O.t1[i] - O.t0[i]; if (d > latMax) latMax = d; if (d > 0 && d < latMin) latMin = d; }
  latMin = Math.max(0.01, Math.min(latMin, 1));
  function shadeWindows(g, w, h, top) {
    M.windows.forEach(function (win) {
      var x0 = Math.max(LEFT, xOf(win.start, w)), x1 = Math.min(w - 8, xOf(win.end, w));
      if (x1 >= LEFT && x0 <= w) { g.fillStyle = faultCol(win.kind); g.fillRect(x0, top, Math.max(2, x1 - x0), h - top); }
    });
  }
  function timeAxis(g, w, h) {
    g.fillStyle = '#5f6b7a'; g.font = '11px system-ui, sans-serif'; g.textBaseline = 'alphabetic';
    var ticks = niceTicks(view.t0, view.t1, Math.max(2, Math.floor((w - LEFT) / 90)));
    ticks.forEach(function (t) { if (xOf(t, w) < w - 40) g.fillText(fmtT(t, ticks.step), xOf(t, w) + 2, h - 3); });
  }
  function drawLatency() {
    var cv = document.getElementById('lat-canvas'), c = setupCanvas(cv, 260), g = c.g, w = c.w, h = c.h - 16;
    g.clearRect(0, 0, w, c.h); shadeWindows(g, w, h, 0);
    var ly0 = Math.log10(latMin), ly1 = Math.log10(latMax * 1.2);
    function yOf(v) { return h - (Math.log10(Math.max(v, latMin)) - ly0) / (ly1 - ly0) * (h - 6); }
    g.font = '11px system-ui, sans-serif'; g.fillStyle = '#5f6b7a'; g.strokeStyle = '#eceff3';
    for (var e = Math.ceil(ly0); e <= ly1; e++) { var yy = yOf(Math.pow(10, e)); g.beginPath(); g.moveTo(LEFT, yy); g.lineTo(w, yy); g.stroke(); g.fillText(Math.pow(10, e) + ' ms', 4, yy + 4); }
    // points straight into the pixel buffer: 100,000 fillRect calls would be the slowest part of the page
    var dpr = window.devicePixelRatio || 1, PW = cv.width, PH = cv.height, img = g.getImageData(0, 0, PW, PH), px = img.data;
    var p = Math.max(0, lowerBound(O.t0, allRows, view.t0, 0, N)), n = 0;
    var dot = Math.max(2, Math.round((lowerBound(O.t0, allRows, view.t1, p, N) - p < 5000 ? 3 : 2) * dpr));
    for (; p < N && O.t0[p] <= view.t1; p++) {
      if (O.type[p] === 3 || (keyFilter >= 0 && O.key[p] !== keyFilter)) continue;
      var cx = Math.round(xOf(O.t0[p], w) * dpr) - 1, cy = Math.round(yOf(O.t1[p] - O.t0[p]) * dpr) - 1, rgb = OUT_RGB[O.type[p]];
      for (var dy = 0; dy < dot; dy++) {
        var row = cy + dy; if (row < 0 || row >= PH) continue;
        for (var dx = 0; dx < dot; dx++) {
          var col = cx + dx; if (col < LEFT * dpr || col >= PW) continue;
          var k = (row * PW + col) * 4; px[k] = rgb[0]; px[k + 1] = rgb[1]; px[k + 2] = rgb[2]; px[k + 3] = 255;
        }
      }
      n++;
    }
    g.putImageData(img, 0, 0);
    var lastY = -100;
    [[0.999, 'p99.9'], [0.99, 'p99'], [0.5, 'p50']].forEach(function (qq) {
      var v = q(qq[0]); if (v == null) return; var yy = yOf(v), ly = Math.max(yy - 3, lastY + 12); lastY = ly;
      g.strokeStyle = '#1d2330'; g.setLineDash([4, 4]); g.beginPath(); g.moveTo(LEFT, yy); g.lineTo(w - 8, yy); g.stroke(); g.setLineDash([]);
      var label = qq[1] + ' ' + v.toFixed(1) + ' ms', tw = g.measureText(label).width;
      g.fillStyle = 'rgba(255,255,255,0.9)'; g.fillRect(w - 134, ly - 10, tw + 8, 13);
      g.fillStyle = '#1d2330'; g.fillText(label, w - 130, ly);
    });
    timeAxis(g, w, c.h); cv.dataset.points = String(n);
  }
  function drawThroughput() {
    var cv = document.getElementById('tp-canvas'), c = setupCanvas(cv, 170), g = c.g, w = c.w, h = c.h - 16;
    g.clearRect(0, 0, w, c.h); shadeWindows(g, w, h, 0);
    var T = M.throughput, n = T.ok.length, top = 1;
    for (var s = 0; s < n; s++) top = Math.max(top, T.ok[s] + T.fail[s] + T.info[s]);
    g.font = '11px system-ui, sans-serif'; g.fillStyle = '#5f6b7a'; g.fillText(top + '/s', 4, 12); g.fillText('0', 4, h);
    for (s = 0; s < n; s++) {
      var x0 = xOf(s * 1000, w), x1 = xOf((s + 1) * 1000, w); if (x1 < LEFT || x0 > w) continue;
      x0 = Math.max(LEFT, x0); var bw = Math.max(1, x1 - x0 - 1), y = h;
      [['ok', 0], ['info', 2], ['fail', 1]].forEach(function (k) {
        var v = T[k[0]][s], bh = v / top * (h - 8); g.fillStyle = OUT_COL[k[1]]; g.fillRect(x0, y - bh, bw, bh); y -= bh;
      });
    }
    timeAxis(g, w, c.h);
  }
  function drawBars(cv, pairs, xlabel, colour) {
    var c = setupCanvas(cv, 200), g = c.g, w = c.w, h = c.h - 18, top = 1;
    pairs.forEach(function (p) { top = Math.max(top, p[1]); });
    g.clearRect(0, 0, w, c.h); g.font = '11px system-ui, sans-serif';
    var n = Math.max(1, pairs.length), bw = Math.min(60, (w - 50) / n - 4);
    pairs.forEach(function (p, k) {
      var x = 46 + k * (bw + 4), bh = p[1] / top * (h - 16);
      g.fillStyle = colour; g.fillRect(x, h - bh, bw, bh);
      g.fillStyle = '#1d2330'; g.fillText(String(p[1]), x, h - bh - 3); g.fillText(String(p[0]), x + bw / 2 - 3, h + 13);
    });
    g.fillStyle = '#5f6b7a'; g.fillText(xlabel, 4, h + 13);
  }
  var SERIES_COL = ['#2f6fdf', '#d9534f', '#3f9e5a', '#9c4fd6', '#e0a526'];
  function drawCurve(cv, curve) {  // one or more series on shared axes, with a legend when several
    var c = setupCanvas(cv, +cv.getAttribute('height') || 200), g = c.g, w = c.w, h = c.h - 18;
    var all = []; curve.series.forEach(function (s) { all = all.concat(s.points); });
    var xs = all.map(function (p) { return p[0]; }), ys = all.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs), y1 = Math.max(1e-9, Math.max.apply(null, ys)), y0 = Math.min(0, Math.min.apply(null, ys));
    var logX = x0 >= 0 && x1 > 100 * Math.max(1, x0);   // e.g. t-visibility buckets from 1 ms to seconds
    function fx(v) { return logX ? Math.log10(1 + v) : v; }
    function X(v) { return 50 + (fx(v) - fx(x0)) / ((fx(x1) - fx(x0)) || 1) * (w - 60); }
    function Y(v) { return h - (v - y0) / ((y1 - y0) || 1) * (h - 10); }
    g.clearRect(0, 0, w, c.h); g.font = '11px system-ui, sans-serif'; g.fillStyle = '#5f6b7a';
    if (logX) { g.fillText('log scale', w / 2 - 20, h + 14); }
    g.fillText(+y1.toPrecision(3) + '', 4, 12); g.fillText(String(y0), 4, h); g.fillText(String(+x0.toPrecision(4)), 50, h + 14); g.fillText(String(+x1.toPrecision(4)), w - 40, h + 14);
    curve.series.forEach(function (s, k) {
      var col = SERIES_COL[k % SERIES_COL.length], pts = s.points;
      g.strokeStyle = col; g.lineWidth = 2; g.setLineDash(k ? [5, 4] : []); g.beginPath();
      pts.forEach(function (p, j) { if (j) g.lineTo(X(p[0]), Y(p[1])); else g.moveTo(X(p[0]), Y(p[1])); }); g.stroke();
      g.setLineDash([]); g.lineWidth = 1; g.fillStyle = col; pts.forEach(function (p) { g.fillRect(X(p[0]) - 2, Y(p[1]) - 2, 4, 4); });
      if (s.name) { g.fillRect(w - 150, 8 + 14 * k, 12, 3); g.fillStyle = '#1d2330'; g.fillText(s.name, w - 134, 12 + 14 * k); }
    });
  }

  /* ---------- anomalies -> timeline ---------- */
  function cell(tr, text) {  // long values (a final read of thousands of items) are cut; the full text is the tooltip
    var td = document.createElement('td'), t = text == null ? '' : String(text);
    if (t.length > 160) { td.title = t; t = t.slice(0, 159) + '… (' + t.length + ' chars; hover for all)'; }
    td.textContent = t; tr.appendChild(td);
  }
  function zoomTo(r) {
    var pad = Math.max(END * 0.015, (O.t1[r] - O.t0[r]) * 2, 40);
    setView(O.t0[r] - pad, O.t1[r] + pad);
  }
  function selectAnomaly(id, li) {
    var a = M.anomalies[id]; if (!a) return;
    document.querySelectorAll('#anomaly-list li.sel').forEach(function (x) { x.classList.remove('sel'); });
    if (li) li.classList.add('sel');
    var rows = new Set(), tmin = Infinity, tmax = -Infinity;
    a.ops.forEach(function (ix) { var r = rowOf.get(ix); if (r !== undefined) { rows.add(r); tmin = Math.min(tmin, O.t0[r]); tmax = Math.max(tmax, O.t1[r]); } });
    highlight = rows.size ? rows : null;
    if (keyFilter >= 0 && a.key != null && M.keys[keyFilter] !== a.key) { keyFilter = -1; document.getElementById('tl-key').value = '-1'; }
    if (rows.size && tmax - tmin > END * 0.25) {
      // ops far apart (an add early, the final read at the end): zoom to the first, list the rest as jump targets
      var first = Array.from(rows).sort(function (x, y) { return O.t0[x] - O.t0[y]; })[0];
      zoomTo(first);
    } else if (rows.size) { var pad = Math.max(30, (tmax - tmin) * 0.15); setView(tmin - pad, tmax + pad); } else drawTimeline();
    var box = document.getElementById('selected-ops'), tb = box.querySelector('tbody');
    box.classList.remove('hidden'); tb.innerHTML = '';
    a.ops.forEach(function (ix) {
      var op = M.proof_ops[String(ix)], tr = document.createElement('tr'); tr.dataset.op = String(ix);
      if (!op) { cell(tr, ix); cell(tr, '(not in the history)'); tb.appendChild(tr); return; }
      if (op.type === 'invoke') tr.className = 'inv';
      var r0 = rowOf.get(ix);
      if (r0 !== undefined) { tr.title = 'click: zoom the timeline to this op'; tr.style.cursor = 'pointer'; tr.addEventListener('click', function () { zoomTo(r0); }); }
      var rest = {}; Object.keys(op).forEach(function (k) { if (['index', 'time', 'process', 'type', 'f', 'key', 'value', 'node', 'siblings'].indexOf(k) < 0) rest[k] = op[k]; });
      [op.index, (op.time / 1e9).toFixed(3), op.process, op.type, op.f, op.key, op.value === undefined ? '' : JSON.stringify(op.value), op.node, op.siblings,
        Object.keys(rest).length ? JSON.stringify(rest) : ''].forEach(function (v) { cell(tr, v); });
      tb.appendChild(tr);
    });
    // the op table sits right above the timeline: bring both into view
    box.scrollIntoView({block: 'start'});
  }
  document.querySelectorAll('#anomaly-list li').forEach(function (li) {
    li.addEventListener('click', function () { selectAnomaly(+li.dataset.anomaly, li); });
  });
  document.querySelectorAll('.key-show').forEach(function (b) {
    b.addEventListener('click', function () {
      var k = M.keys.indexOf(b.dataset.key); keyFilter = k; document.getElementById('tl-key').value = String(k);
      var a = M.anomalies.filter(function (x) { return x.key === b.dataset.key; })[0];
      if (a) { selectAnomaly(a.id, document.querySelector('#anomaly-list li[data-anomaly="' + a.id + '"]')); keyFilter = k; document.getElementById('tl-key').value = String(k); drawTimeline(); }
      else { highlight = null; setView(0, END); }
      document.getElementById('timeline').scrollIntoView({block: 'start'});
    });
  });

  /* ---------- wire up ---------- */
  listeners.push(drawTimeline, drawLatency, drawThroughput);
  function drawStatic() {
    drawBars(document.getElementById('sib-canvas'), M.siblings.histogram, 'siblings', '#2f6fdf');
    document.querySelectorAll('canvas.curve').forEach(function (cv) {
      drawCurve(cv, (cv.dataset.set === 'sib' ? M.siblings.over_time : M.staleness)[+cv.dataset.curve]);
    });
  }
  legend();
  setView(0, END);
  TIMES.charts = performance.now() - T0;
  drawStatic();
  var rt = null;
  window.addEventListener('resize', function () { clearTimeout(rt); rt = setTimeout(function () { setView(view.t0, view.t1); drawStatic(); }, 120); });
  TIMES.ready = performance.now() - T0;
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  document.body.dataset.timings = JSON.stringify(TIMES);
  document.body.dataset.ready = '1';
  }
})();
