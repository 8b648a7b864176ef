/*
 * DMP dashboard — served by `dmp serve`. Vanilla ES2020, no build step, no
 * external resources. The API it calls is `/api/v1/…` (see the server docs).
 *
 * Pages
 *   /login          login.html (body[data-page="login"]): sign-in form
 *   /               index.html (body[data-page="app"]): single page app
 *     #/            overview: every pipeline, status refreshed every 2 s,
 *                   lag sparklines fetched lazily (3 at a time)
 *     #/p/NAME      one pipeline: live status over EventSource (poll fallback),
 *                   progress, lag chart, workers (on a cluster), log, runs,
 *                   dead letters, conflicts (two-way syncs), verify, change
 *                   stream, plugins
 *     #/new         create a pipeline (admin)
 *     #/edit/NAME   edit a pipeline (admin)
 *     #/admin       API tokens, users, audit log (admin)
 *
 * data-testid hooks
 *   login:     login-user, login-password, login-submit, login-error
 *   header:    session-user, session-role, logout
 *   messages:  message-error, message-info (global banners)
 *   overview:  new-pipeline, pipeline-row-NAME, pipeline-state-NAME
 *   pipeline:  pipeline-state, live-indicator, btn-start, start-restart,
 *              btn-stop, btn-pause, btn-resume, btn-edit, btn-delete(-confirm),
 *              error-box, table-progress-TABLE (data-percent), lag-chart
 *              (data-points; data-back-points, those of a two-way sync's
 *              B → A line), lag-legend (shown with that line), log-lines,
 *              log-level, dlq-count, dlq-show-TABLE,
 *              dlq-replay-TABLE, dlq-purge-TABLE(-confirm), dlq-replay-all,
 *              dlq-purge-all(-confirm), conflicts-count, conflicts-all (the
 *              "every entry" toggle), conflict-ID (a row; ID as `a:7`;
 *              data-open), conflict-resolve-a-ID(-confirm),
 *              conflict-resolve-b-ID(-confirm), btn-verify, btn-verify-repair,
 *              verify-result, stream-drop(-confirm), plugin-upload-NAME (the
 *              file input; choosing a file uploads it), plugin-rollback-NAME-V,
 *              on the cluster: cluster-summary, cluster-worker-NAME,
 *              cluster-work-TABLE-CHUNK (data-worker, data-state; CHUNK is
 *              `finish` for a table's finish step, cluster-work-finish for
 *              the pipeline's), cluster-stream
 *   form:      form-name, form-mode, form-source, form-target, form-tables,
 *              form-every, form-toml, form-toml-direct, btn-test, test-result,
 *              btn-save, form-error
 *   admin:     token-name, token-role, token-expires, token-create,
 *              token-value, token-revoke-ID(-confirm), user-name, user-role,
 *              user-password, user-add, audit-table
 */
(() => {
  'use strict';

  const HOUR = 3600 * 1000;
  const MODES = ['full', 'incremental', 'cdc', 'full+cdc'];
  const ROLES = ['viewer', 'operator', 'admin'];
  const TOML_TYPE = 'application/toml';
  const RETURN_KEY = 'dmp-return-hash';
  const enc = encodeURIComponent;

  /* ------------------------------------------------------------------ *
   * DOM helpers: every element is built with createElement/textContent, *
   * never innerHTML, so API data is always inserted as text.            *
   * ------------------------------------------------------------------ */

  const PROPS = new Set(['value', 'checked', 'disabled', 'readOnly', 'hidden', 'selected', 'required', 'colSpan', 'rowSpan']);

  /** h('tag', {class, testid, text, onclick, …attributes}, ...children) */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'testid') el.setAttribute('data-testid', v);
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    return append(el, children);
  }

  /** Appends children (nodes or text; null/false skipped; arrays flattened). */
  function append(el, children) {
    for (const c of [children].flat(Infinity)) {
      if (c == null || c === false || c === true) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  /** Writes only when the value changed (keeps periodic refreshes cheap). */
  function setText(el, text) {
    const t = text == null ? '' : String(text);
    if (el.textContent !== t) el.textContent = t;
  }
  function setAttr(el, name, value) {
    const v = String(value);
    if (el.getAttribute(name) !== v) el.setAttribute(name, v);
  }
  function setClass(el, cls) {
    if (el.className !== cls) el.className = cls;
  }
  function thead(labels) {
    return h('thead', null, h('tr', null, labels.map((l) => h('th', null, l))));
  }
  function button(label, onclick, props = {}) {
    return h('button', Object.assign({ type: 'button', class: 'btn' }, props, { onclick }), label);
  }

  /** A button that runs `action` only after an inline "Yes" (no dialogs). */
  function confirmButton(label, question, action, testid, cls = 'btn danger') {
    const btn = h('button', { type: 'button', class: cls, testid }, label);
    const yes = h('button', { type: 'button', class: 'btn danger', testid: testid && `${testid}-confirm` }, 'Yes');
    const no = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const ask = h('span', { class: 'confirm-ask', hidden: true }, h('span', null, question), yes, no);
    btn.addEventListener('click', () => { btn.hidden = true; ask.hidden = false; });
    no.addEventListener('click', () => { btn.hidden = false; ask.hidden = true; });
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      try { await action(); } catch (e) { showError(e); }
      yes.disabled = false; btn.hidden = false; ask.hidden = true;
    });
    return h('span', { class: 'confirm' }, btn, ask);
  }

  /** Runs an async click handler with the button disabled; errors go to a banner. */
  async function busy(btn, fn) {
    btn.disabled = true;
    try { await fn(); } catch (e) { showError(e); } finally { btn.disabled = false; }
  }

  /** A titled card with an action area and an inline error line. */
  function card(title, props = {}) {
    const actions = h('div', { class: 'card-actions' });
    const err = h('div', { class: 'card-error', role: 'alert', hidden: true });
    const body = h('div', { class: 'card-body' });
    const el = h('section', { class: `card ${props.class || ''}`.trim() },
      h('div', { class: 'card-head' }, h('h2', null, title), actions), err, body);
    return {
      el, actions, body,
      error(e) { err.hidden = !e; setText(err, e ? errText(e) : ''); },
    };
  }

  /* ------------------------------------------------------------------ *
   * Formatting                                                          *
   * ------------------------------------------------------------------ */

  const NF = new Intl.NumberFormat();
  const pad2 = (n) => String(n).padStart(2, '0');

  function fmtNum(n) {
    return n == null || !Number.isFinite(Number(n)) ? '—' : NF.format(Math.round(Number(n)));
  }
  function fmtRate(n) {
    if (n == null || !Number.isFinite(Number(n))) return '—';
    n = Number(n);
    return n > 0 && n < 10 ? n.toFixed(1) : NF.format(Math.round(n));
  }
  /** Seconds → "45s", "1m20s", "2h3m4s", "1d2h3m". */
  function fmtDuration(sec) {
    if (sec == null || !Number.isFinite(Number(sec))) return '—';
    let s = Math.max(0, Math.round(Number(sec)));
    const d = Math.floor(s / 86400); s %= 86400;
    const hh = Math.floor(s / 3600); s %= 3600;
    const m = Math.floor(s / 60); s %= 60;
    if (d) return `${d}d${hh}h${m}m`;
    if (hh) return `${hh}h${m}m${s}s`;
    if (m) return `${m}m${s}s`;
    return `${s}s`;
  }
  function trimNum(x) {
    return String(Math.round(x * 10) / 10);
  }
  /** Lag in milliseconds → "850 ms", "1.5 s", "3 min", "1.2 h". */
  function fmtLag(ms) {
    if (ms == null || !Number.isFinite(Number(ms))) return '—';
    ms = Number(ms);
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${trimNum(ms / 1000)} s`;
    if (ms < HOUR) return `${trimNum(ms / 60000)} min`;
    return `${trimNum(ms / HOUR)} h`;
  }
  function fmtBytes(n) {
    if (n == null || !Number.isFinite(Number(n))) return '—';
    n = Number(n);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? trimNum(n) : n} ${units[i]}`;
  }
  /** Timestamps: RFC 3339 strings, unix seconds or unix milliseconds. */
  function toDate(v) {
    if (v == null || v === '') return null;
    const d = typeof v === 'number' ? new Date(v < 1e12 ? v * 1000 : v) : new Date(v);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  function fmtTime(v) {
    const d = toDate(v);
    if (!d) return v == null || v === '' ? '—' : String(v);
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }
  function fmtClock(v) {
    const d = toDate(v);
    return d ? `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}` : String(v ?? '');
  }
  function fmtAgo(v) {
    const d = toDate(v);
    if (!d) return '—';
    const s = Math.round((Date.now() - d.getTime()) / 1000);
    if (s < 5) return 'just now';
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }
  function shortHash(s) {
    return s ? String(s).slice(0, 12) : '—';
  }
  function asText(v) {
    if (v == null) return '—';
    return typeof v === 'string' ? v : JSON.stringify(v);
  }
  function cssToken(s) {
    return String(s ?? '').toLowerCase().replace(/[^a-z0-9]+/g, '-');
  }

  /** Colour of a state/status badge. */
  function badgeColor(state) {
    const s = String(state ?? '').toLowerCase();
    if (['failed', 'error', 'denied', 'refused', 'revoked', 'expired'].includes(s)) return 'red';
    if (['running', 'streaming', 'starting', 'stopping'].includes(s)) return 'blue';
    if (['done', 'ok', 'success', 'succeeded', 'equal', 'active'].includes(s)) return 'green';
    if (['paused', 'pausing', 'partial'].includes(s)) return 'amber';
    return 'grey';
  }
  function badgeClass(state) {
    return `badge badge-${badgeColor(state)}`;
  }
  function badge(state, props = {}) {
    return h('span', Object.assign({ class: badgeClass(state) }, props), state ?? '—');
  }
  function isActive(state) {
    return state === 'running' || state === 'streaming' || state === 'paused';
  }

  /* ------------------------------------------------------------------ *
   * Messages: visible banners for every API error (keyed ones replace   *
   * each other, so a failing 2 s poll shows one banner, not many).      *
   * ------------------------------------------------------------------ */

  const keyedMessages = new Map();

  function showMessage(kind, text, key) {
    const box = document.getElementById('messages');
    if (!box) return;
    const old = key && keyedMessages.get(key);
    if (old && old.isConnected) { setText(old.firstChild, text); return; }
    const close = h('button', { type: 'button', class: 'msg-close', 'aria-label': 'Dismiss' }, '×');
    const el = h('div', { class: `msg msg-${kind}`, role: kind === 'error' ? 'alert' : 'status', testid: `message-${kind}` },
      h('span', { class: 'msg-text' }, text), close);
    const remove = () => { el.remove(); if (key && keyedMessages.get(key) === el) keyedMessages.delete(key); };
    close.addEventListener('click', remove);
    box.append(el);
    if (key) keyedMessages.set(key, el);
    if (kind === 'info') setTimeout(remove, 5000);
  }
  function showError(err, key) { showMessage('error', errText(err), key); }
  function notify(text) { showMessage('info', text); }
  function clearMessage(key) {
    const el = keyedMessages.get(key);
    if (el) { el.remove(); keyedMessages.delete(key); }
  }
  function clearKeyedMessages() {
    for (const key of [...keyedMessages.keys()]) clearMessage(key);
  }
  function errText(err) {
    return err instanceof Error ? err.message : String(err);
  }

  /* ------------------------------------------------------------------ *
   * API client: session cookie + X-CSRF-Token on writes; errors become  *
   * ApiError with the server's {"error"} text; 401 → /login.            *
   * ------------------------------------------------------------------ */

  const session = { user: null, role: null, csrf: null };
  let redirecting = false;

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function can(role) {
    return ROLES.indexOf(session.role) >= ROLES.indexOf(role);
  }

  function storage(op, value) {
    try {
      if (op === 'get') return sessionStorage.getItem(RETURN_KEY);
      if (op === 'set') sessionStorage.setItem(RETURN_KEY, value);
      if (op === 'del') sessionStorage.removeItem(RETURN_KEY);
    } catch (_) { /* storage disabled: nothing to remember */ }
    return null;
  }

  function goLogin() {
    if (redirecting) return;
    redirecting = true;
    if (location.hash && location.hash !== '#/') storage('set', location.hash);
    location.assign('/login');
  }

  /** api(method, path, {json | body+type, noRedirect}) → parsed JSON, text or null. */
  async function api(method, path, opts = {}) {
    const headers = { Accept: 'application/json' };
    let body;
    if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
      body = opts.body;
      if (opts.type) headers['Content-Type'] = opts.type;
    }
    if (method !== 'GET' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
    let res;
    try {
      res = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, `Network error (${method} ${path}): ${errText(e)}`);
    }
    if (res.status === 401 && !opts.noRedirect) {
      goLogin();
      throw new ApiError(401, 'Not logged in');
    }
    if (!res.ok) throw new ApiError(res.status, await errorMessage(res));
    if (res.status === 204) return null;
    const type = res.headers.get('content-type') || '';
    const text = await res.text();
    if (type.includes('json')) {
      if (!text) return null;
      try { return JSON.parse(text); } catch (e) { throw new ApiError(res.status, `Bad JSON from ${path}: ${errText(e)}`); }
    }
    return text;
  }

  async function errorMessage(res) {
    let text = '';
    try { text = await res.text(); } catch (_) { /* no body */ }
    try {
      const j = JSON.parse(text);
      if (j && typeof j.error === 'string' && j.error) return j.error;
    } catch (_) { /* not JSON */ }
    const fallback = res.status === 403 ? 'Forbidden: your role lacks the right' : `${res.status} ${res.statusText}`;
    return text.trim().slice(0, 500) || fallback;
  }

  function parseJson(text) {
    try { return JSON.parse(text); } catch (_) { return null; }
  }

  /** Runs at most `n` jobs at once; returns a function queueing a job. */
  function limiter(n) {
    let active = 0;
    let queue = [];
    const next = () => {
      while (active < n && queue.length) {
        const job = queue.shift();
        active++;
        job().finally(() => { active--; next(); });
      }
    };
    const run = (fn) => new Promise((resolve, reject) => {
      queue.push(() => Promise.resolve().then(fn).then(resolve, reject));
      next();
    });
    run.clear = () => { queue = []; };
    return run;
  }

  /* ------------------------------------------------------------------ *
   * Router: hash routes; each page gets a context whose timers, event   *
   * sources and listeners are released when the page is left.           *
   * ------------------------------------------------------------------ */

  const ROUTES = [
    [/^#?\/?$/, (ctx, main) => renderOverview(ctx, main)],
    [/^#\/p\/(.+)$/, (ctx, main, m) => renderPipeline(ctx, main, m[1])],
    [/^#\/new\/?$/, (ctx, main) => renderForm(ctx, main, null)],
    [/^#\/edit\/(.+)$/, (ctx, main, m) => renderForm(ctx, main, m[1])],
    [/^#\/admin\/?$/, (ctx, main) => renderAdmin(ctx, main)],
  ];
  let page = null;

  function newContext() {
    const cleanups = [];
    const ctx = {
      alive: true,
      onClose(fn) { cleanups.push(fn); },
      every(fn, ms) {
        const id = setInterval(() => { if (ctx.alive) fn(); }, ms);
        const stop = () => clearInterval(id);
        cleanups.push(stop);
        return stop;
      },
      after(fn, ms) {
        const id = setTimeout(() => { if (ctx.alive) fn(); }, ms);
        cleanups.push(() => clearTimeout(id));
      },
      listen(target, type, fn) {
        target.addEventListener(type, fn);
        cleanups.push(() => target.removeEventListener(type, fn));
      },
      close() {
        ctx.alive = false;
        for (const fn of cleanups.splice(0)) { try { fn(); } catch (_) { /* already gone */ } }
      },
    };
    return ctx;
  }

  function route() {
    if (page) page.close();
    clearKeyedMessages();
    const ctx = newContext();
    page = ctx;
    const main = document.getElementById('main');
    main.replaceChildren();
    document.title = 'DMP';
    const hash = location.hash || '#/';
    for (const a of document.querySelectorAll('#nav a')) {
      const r = a.getAttribute('data-route');
      a.classList.toggle('active', (r === 'admin' && hash.startsWith('#/admin')) || (r === 'overview' && !hash.startsWith('#/admin')));
    }
    for (const [re, render] of ROUTES) {
      const m = re.exec(hash);
      if (!m) continue;
      let name;
      try { name = m[1] !== undefined ? decodeURIComponent(m[1]) : undefined; } catch (_) { break; }
      render(ctx, main, [m[0], name]);
      return;
    }
    main.append(h('div', { class: 'empty-page' }, h('h1', null, 'Page not found'), h('a', { href: '#/' }, 'Back to the pipelines')));
  }

  function denied(main, text) {
    main.append(h('div', { class: 'empty-page' }, h('h1', null, 'Not allowed'), h('p', null, text), h('a', { href: '#/' }, 'Back to the pipelines')));
  }

  /* ------------------------------------------------------------------ *
   * Charts on <canvas>: a sparkline and a line chart with axis labels.  *
   * Both set data-points to the number of points drawn.                 *
   * ------------------------------------------------------------------ */

  /** Sizes the backing store for the CSS size and device pixel ratio. */
  function prepCanvas(canvas, fallbackW, fallbackH) {
    const w = canvas.clientWidth || fallbackW;
    const ht = canvas.clientHeight || fallbackH;
    const dpr = window.devicePixelRatio || 1;
    const pw = Math.max(1, Math.round(w * dpr));
    const ph = Math.max(1, Math.round(ht * dpr));
    if (canvas.width !== pw) canvas.width = pw;
    if (canvas.height !== ph) canvas.height = ph;
    const g = canvas.getContext && canvas.getContext('2d');
    if (!g) return null;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, ht);
    return { g, w, h: ht };
  }

  /** The lines' colours: the stream (A → B) and a two-way sync's leg back. */
  const LAG_COLOR = '#2563eb';
  const BACK_COLOR = '#dc6803';
  const BACK_DASH = [5, 3];

  /** Lag points as {at, lag_ms, back_lag_ms} (null when the point has none). */
  function lagPoints(points) {
    return (points || [])
      .map((p) => {
        const back = p.back_lag_ms == null ? NaN : Number(p.back_lag_ms);
        return { at: Number(p.at), lag_ms: Number(p.lag_ms), back_lag_ms: Number.isFinite(back) ? back : null };
      })
      .filter((p) => Number.isFinite(p.at) && Number.isFinite(p.lag_ms))
      .sort((a, b) => a.at - b.at);
  }

  /** Valid lag points inside the window, oldest first. */
  function windowPoints(points, windowMs) {
    const pts = lagPoints(points);
    const end = Math.max(Date.now(), pts.length ? pts[pts.length - 1].at : 0);
    return { pts: pts.filter((p) => p.at >= end - windowMs), end };
  }

  /** The line through the points' `key`; a point without one breaks it. */
  function tracePath(g, pts, X, Y, key = 'lag_ms') {
    g.beginPath();
    let pen = false;
    for (const p of pts) {
      const v = p[key];
      if (v == null) { pen = false; continue; }
      if (pen) g.lineTo(X(p.at), Y(v)); else g.moveTo(X(p.at), Y(v));
      pen = true;
    }
  }

  function drawSparkline(canvas, points) {
    const { pts, end } = windowPoints(points, HOUR);
    canvas.setAttribute('data-points', pts.length);
    const c = prepCanvas(canvas, 100, 24);
    if (!c) return;
    const { g, w, h: ht } = c;
    if (!pts.length) {
      g.strokeStyle = '#d0d5dd';
      g.beginPath(); g.moveTo(1, ht - 1.5); g.lineTo(w - 1, ht - 1.5); g.stroke();
      return;
    }
    const max = Math.max(1, pts.reduce((m, p) => Math.max(m, p.lag_ms), 0));
    const X = (t) => 1 + ((t - (end - HOUR)) / HOUR) * (w - 4);
    const Y = (v) => ht - 2 - (v / max) * (ht - 4);
    g.strokeStyle = LAG_COLOR;
    g.lineWidth = 1.25;
    tracePath(g, pts, X, Y);
    g.stroke();
    const last = pts[pts.length - 1];
    g.fillStyle = LAG_COLOR;
    g.beginPath(); g.arc(X(last.at), Y(last.lag_ms), 1.8, 0, Math.PI * 2); g.fill();
  }

  /** Round axis: top value and step for about 4 ticks. */
  function niceScale(max) {
    if (!(max > 0)) return { top: 1000, step: 250 };
    const raw = max / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
    return { top: Math.max(step, Math.ceil(max / step) * step), step };
  }

  /**
   * The lag line of the points in the window, and a second line of their
   * `back_lag_ms` (a two-way sync's B → A) where they have one, on the same
   * axis. Returns how many points the second line has.
   */
  function drawLineChart(canvas, points, windowMs) {
    const { pts, end } = windowPoints(points, windowMs);
    const backs = pts.filter((p) => p.back_lag_ms != null);
    canvas.setAttribute('data-points', pts.length);
    canvas.setAttribute('data-back-points', backs.length);
    const c = prepCanvas(canvas, 600, 220);
    if (!c) return backs.length;
    const { g, w, h: ht } = c;
    const pad = { l: 66, r: 14, t: 12, b: 26 };
    const pw = Math.max(10, w - pad.l - pad.r);
    const ph = Math.max(10, ht - pad.t - pad.b);
    const start = end - windowMs;
    const { top, step } = niceScale(pts.reduce((m, p) => Math.max(m, p.lag_ms, p.back_lag_ms || 0), 0));
    const X = (t) => pad.l + ((t - start) / windowMs) * pw;
    const Y = (v) => pad.t + ph - (v / top) * ph;
    g.font = '11px system-ui, -apple-system, "Segoe UI", sans-serif';
    g.lineWidth = 1;
    // Y grid and labels.
    g.textAlign = 'right'; g.textBaseline = 'middle';
    for (let i = 0; i * step <= top + step / 1e6; i++) {
      const y = Math.round(Y(i * step)) + 0.5;
      g.strokeStyle = '#eaecf0';
      g.beginPath(); g.moveTo(pad.l, y); g.lineTo(pad.l + pw, y); g.stroke();
      g.fillStyle = '#667085';
      g.fillText(fmtLag(i * step), pad.l - 6, y);
    }
    // X ticks every 10 minutes, labelled HH:MM.
    g.textAlign = 'center'; g.textBaseline = 'top';
    const tick = 10 * 60000;
    for (let t = Math.ceil(start / tick) * tick; t <= end; t += tick) {
      const x = Math.round(X(t)) + 0.5;
      g.strokeStyle = '#f2f4f7';
      g.beginPath(); g.moveTo(x, pad.t); g.lineTo(x, pad.t + ph); g.stroke();
      g.fillStyle = '#667085';
      const d = new Date(t);
      g.fillText(`${pad2(d.getHours())}:${pad2(d.getMinutes())}`, x, pad.t + ph + 6);
    }
    // Axes and the y axis title.
    g.strokeStyle = '#98a2b3';
    g.beginPath(); g.moveTo(pad.l + 0.5, pad.t); g.lineTo(pad.l + 0.5, pad.t + ph + 0.5); g.lineTo(pad.l + pw, pad.t + ph + 0.5); g.stroke();
    g.save();
    g.translate(10, pad.t + ph / 2); g.rotate(-Math.PI / 2);
    g.textAlign = 'center'; g.textBaseline = 'middle'; g.fillStyle = '#475467';
    g.fillText('lag', 0, 0);
    g.restore();
    if (!pts.length) {
      g.textAlign = 'center'; g.textBaseline = 'middle'; g.fillStyle = '#98a2b3';
      g.font = '13px system-ui, -apple-system, "Segoe UI", sans-serif';
      g.fillText('No lag data in the last hour', pad.l + pw / 2, pad.t + ph / 2);
      return backs.length;
    }
    // Area under the line, then the line.
    tracePath(g, pts, X, Y);
    g.lineTo(X(pts[pts.length - 1].at), Y(0)); g.lineTo(X(pts[0].at), Y(0)); g.closePath();
    g.fillStyle = 'rgba(37, 99, 235, 0.08)';
    g.fill();
    tracePath(g, pts, X, Y);
    g.strokeStyle = LAG_COLOR; g.lineWidth = 1.5;
    g.stroke();
    const last = pts[pts.length - 1];
    g.fillStyle = LAG_COLOR;
    g.beginPath(); g.arc(X(last.at), Y(last.lag_ms), 2.5, 0, Math.PI * 2); g.fill();
    // The leg back on top, dashed and without an area, so that the line
    // under it still shows where both lie together (caught up, at 0).
    if (backs.length) {
      tracePath(g, pts, X, Y, 'back_lag_ms');
      g.strokeStyle = BACK_COLOR; g.lineWidth = 1.5;
      g.setLineDash(BACK_DASH);
      g.stroke();
      g.setLineDash([]);
      const lastBack = backs[backs.length - 1];
      g.fillStyle = BACK_COLOR;
      g.beginPath(); g.arc(X(lastBack.at), Y(lastBack.back_lag_ms), 2.5, 0, Math.PI * 2); g.fill();
    }
    return backs.length;
  }

  /* ------------------------------------------------------------------ *
   * Overview (#/): one table row per pipeline, patched in place every   *
   * 2 s; sparklines load only for visible rows, 3 requests at a time.   *
   * ------------------------------------------------------------------ */

  function renderOverview(ctx, main) {
    document.title = 'Pipelines · DMP';
    const summary = h('span', { class: 'muted' });
    main.append(h('div', { class: 'page-head' },
      h('h1', null, 'Pipelines'), summary,
      can('admin') ? h('a', { class: 'btn primary', href: '#/new', testid: 'new-pipeline' }, 'New pipeline') : null));
    const tbody = h('tbody');
    const table = h('table', { class: 'grid overview', hidden: true },
      thead(['Pipeline', 'State', 'Mode', 'Source → Target', 'Last run', 'Rows/s', 'Lag (1 h)']), tbody);
    const empty = h('p', { class: 'empty', hidden: true }, 'No pipelines yet.');
    main.append(table, empty);

    const rows = new Map();
    const sparks = sparklineLoader(ctx);
    let inFlight = false;

    async function refresh() {
      if (inFlight) return;
      inFlight = true;
      try {
        const list = await api('GET', '/api/v1/pipelines');
        if (!ctx.alive) return;
        clearMessage('overview');
        update(Array.isArray(list) ? list : []);
      } catch (e) {
        if (ctx.alive) showError(`Pipelines: ${errText(e)}`, 'overview');
      } finally {
        inFlight = false;
      }
    }

    function update(list) {
      const seen = new Set();
      for (const p of list) {
        seen.add(p.name);
        let row = rows.get(p.name);
        if (!row) {
          row = overviewRow(p.name);
          rows.set(p.name, row);
          sparks.watch(p.name, row.canvas, row.sparkErr);
        }
        updateOverviewRow(row, p);
      }
      for (const [name, row] of rows) {
        if (seen.has(name)) continue;
        row.tr.remove();
        sparks.forget(name);
        rows.delete(name);
      }
      // Keep the API's order (failed first), moving rows only when it changed.
      const wanted = list.map((p) => rows.get(p.name).tr);
      const current = [...tbody.children];
      if (wanted.length !== current.length || wanted.some((tr, i) => tr !== current[i])) {
        for (const tr of wanted) tbody.append(tr);
      }
      table.hidden = list.length === 0;
      empty.hidden = list.length !== 0;
      const counts = {};
      for (const p of list) counts[p.state] = (counts[p.state] || 0) + 1;
      setText(summary, `${list.length} total` + Object.keys(counts).sort().map((s) => ` · ${counts[s]} ${s}`).join(''));
      sparks.tick();
    }

    refresh();
    ctx.every(refresh, 2000);
  }

  function overviewRow(name) {
    const r = {
      badge: h('span', { class: 'badge', testid: `pipeline-state-${name}` }),
      error: h('div', { class: 'row-error', hidden: true }),
      mode: h('span', { class: 'tag' }),
      schedule: h('div', { class: 'muted small' }),
      source: h('span', { class: 'url' }),
      target: h('span', { class: 'url' }),
      runBadge: h('span', { class: 'badge' }),
      runText: h('span', { class: 'muted small' }),
      rate: h('td', { class: 'num' }),
      lagNow: h('span', { class: 'lag-now small' }),
      canvas: h('canvas', { class: 'spark', 'data-points': 0 }),
      sparkErr: h('span', { class: 'spark-error small', hidden: true }, 'lag unavailable'),
    };
    const href = `#/p/${enc(name)}`;
    r.tr = h('tr', { testid: `pipeline-row-${name}` },
      h('td', null, h('a', { class: 'name', href }, name), r.error),
      h('td', null, r.badge),
      h('td', null, r.mode, r.schedule),
      h('td', { class: 'route' }, r.source, h('span', { class: 'arrow' }, ' → '), r.target),
      h('td', null, r.runBadge, ' ', r.runText),
      r.rate,
      h('td', { class: 'lag' }, r.canvas, r.sparkErr, r.lagNow));
    r.tr.addEventListener('click', (ev) => {
      if (!ev.target.closest('a, button')) location.hash = href;
    });
    return r;
  }

  function updateOverviewRow(r, p) {
    setText(r.badge, p.state);
    setClass(r.badge, badgeClass(p.state));
    setClass(r.tr, p.state === 'failed' ? 'row-failed' : '');
    setText(r.error, p.error || '');
    setAttr(r.error, 'title', p.error || '');
    r.error.hidden = !p.error;
    setText(r.mode, p.mode);
    setText(r.schedule, p.schedule ? `every ${p.schedule}` : '');
    setText(r.source, p.source);
    setAttr(r.source, 'title', p.source ?? '');
    setText(r.target, p.target);
    setAttr(r.target, 'title', p.target ?? '');
    const lr = p.last_run;
    if (lr) {
      setText(r.runBadge, lr.status);
      setClass(r.runBadge, badgeClass(lr.status));
      r.runBadge.hidden = false;
      const when = lr.finished_at || lr.started_at;
      setText(r.runText, `#${lr.run} · ${fmtAgo(when)}${lr.rows != null ? ` · ${fmtNum(lr.rows)} rows` : ''}`);
      setAttr(r.runText, 'title', `started ${fmtTime(lr.started_at)}, finished ${fmtTime(lr.finished_at)}`);
    } else {
      r.runBadge.hidden = true;
      setText(r.runText, 'never run');
    }
    setText(r.rate, fmtRate(p.rows_per_s));
    setText(r.lagNow, p.lag_ms == null ? '' : fmtLag(p.lag_ms));
  }

  /** Lazy sparkline fetching: visible rows only, 3 at a time, each at most every 30 s. */
  function sparklineLoader(ctx) {
    const limit = limiter(3);
    const items = new Map();
    const byCanvas = new Map();
    const io = 'IntersectionObserver' in window
      ? new IntersectionObserver((entries) => {
        for (const e of entries) {
          const item = byCanvas.get(e.target);
          if (!item) continue;
          item.visible = e.isIntersecting;
          maybeLoad(item);
        }
      }, { rootMargin: '100px' })
      : null;
    ctx.onClose(() => { if (io) io.disconnect(); limit.clear(); });

    function maybeLoad(item) {
      if (!ctx.alive || !item.visible || item.pending || Date.now() - item.fetchedAt < 30000) return;
      item.pending = true;
      limit(() => load(item));
    }
    async function load(item) {
      try {
        const pts = await api('GET', `/api/v1/pipelines/${enc(item.name)}/lag?minutes=60`);
        if (!ctx.alive || !items.has(item.name)) return;
        drawSparkline(item.canvas, Array.isArray(pts) ? pts : []);
        item.err.hidden = true;
        item.canvas.hidden = false;
      } catch (e) {
        if (!ctx.alive) return;
        item.err.hidden = false;
        item.canvas.hidden = true;
        item.err.title = `Lag history: ${errText(e)}`;
      } finally {
        item.pending = false;
        item.fetchedAt = Date.now();
      }
    }
    return {
      watch(name, canvas, err) {
        const item = { name, canvas, err, visible: !io, pending: false, fetchedAt: 0 };
        items.set(name, item);
        byCanvas.set(canvas, item);
        if (io) io.observe(canvas);
      },
      forget(name) {
        const item = items.get(name);
        if (!item) return;
        if (io) io.unobserve(item.canvas);
        byCanvas.delete(item.canvas);
        items.delete(name);
      },
      tick() { for (const item of items.values()) maybeLoad(item); },
    };
  }

  /* ------------------------------------------------------------------ *
   * Pipeline page (#/p/NAME): sections fed by one status stream.        *
   * ------------------------------------------------------------------ */

  function renderPipeline(ctx, main, name) {
    document.title = `${name} · DMP`;
    const pl = { ctx, name, base: `/api/v1/pipelines/${enc(name)}`, state: null, mode: '', bg: limiter(3) };
    ctx.onClose(() => pl.bg.clear());

    const head = pipelineHeader(pl);
    const progress = progressCard(pl);
    const lag = lagCard(pl);
    const stream = streamCard(pl);
    const cluster = clusterCard(pl);
    const logs = logCard(pl);
    const runs = runsCard(pl);
    const dlq = deadLetterCard(pl);
    const conflicts = conflictCard(pl);
    const verify = verifyCard(pl);
    const plugins = pluginCard(pl);
    main.append(head.el,
      h('div', { class: 'cols' }, progress.el, lag.el),
      cluster.el, stream.el, logs.el, runs.el, dlq.el, conflicts.el, verify.el, plugins.el);

    function setMode(mode) {
      if (!mode || mode === pl.mode) return;
      pl.mode = mode;
      head.mode(mode);
      const cdc = mode.includes('cdc');
      if (cdc && stream.el.hidden) { stream.el.hidden = false; pl.bg(stream.load); }
      stream.el.hidden = !cdc;
      // Only a two-way sync logs conflicts.
      const twoWay = mode === 'bidirectional';
      if (twoWay && conflicts.el.hidden) { conflicts.el.hidden = false; pl.bg(conflicts.load); }
      conflicts.el.hidden = !twoWay;
    }

    function onStatus(s) {
      if (!ctx.alive || !s || typeof s !== 'object') return;
      const prev = pl.state;
      pl.state = s.state;
      setMode(s.mode);
      head.status(s);
      progress.update(s);
      lag.status(s);
      cluster.status(s);
      if (prev !== null && prev !== s.state) {
        pl.bg(runs.load); pl.bg(dlq.load);
        if (!stream.el.hidden) pl.bg(stream.load);
        if (!conflicts.el.hidden) pl.bg(conflicts.load);
      }
    }

    api('GET', pl.base)
      .then((d) => { if (ctx.alive && d) { head.detail(d); setMode(d.mode); } })
      .catch((e) => { if (ctx.alive) head.error(e); });
    api('GET', `${pl.base}/status`)
      .then(onStatus)
      .catch((e) => { if (ctx.alive) progress.error(e); });
    for (const section of [lag, logs, runs, dlq, verify, plugins]) pl.bg(section.load);

    liveUpdates(pl, { status: onStatus, log: logs.append, reloadLogs: logs.load, mode: head.live });

    // Slower sections refresh while something runs.
    ctx.every(() => {
      if (!isActive(pl.state)) return;
      pl.bg(runs.load); pl.bg(dlq.load);
      if (!stream.el.hidden) pl.bg(stream.load);
      if (!conflicts.el.hidden) pl.bg(conflicts.load);
    }, 10000);
    ctx.every(() => {
      if (isActive(pl.state) && !cluster.el.hidden) pl.bg(cluster.load);
    }, 2000);
    ctx.listen(window, 'resize', lag.redraw);
  }

  /** Section loader: runs fn once at a time, shows its error in the card. */
  function sectionLoader(ctx, c, fn) {
    let inFlight = false;
    return async () => {
      if (inFlight || !ctx.alive) return;
      inFlight = true;
      try {
        await fn();
        if (ctx.alive) c.error(null);
      } catch (e) {
        if (ctx.alive) c.error(e);
      } finally {
        inFlight = false;
      }
    };
  }

  /** EventSource on …/events; on error a 2 s poll takes over and the stream is retried after 30 s. */
  function liveUpdates(pl, on) {
    const { ctx } = pl;
    let es = null;
    let stopPoll = null;
    let polled = false;
    let inFlight = false;

    async function pollOnce() {
      if (inFlight) return;
      inFlight = true;
      try {
        const s = await api('GET', `${pl.base}/status`);
        on.status(s);
        await on.reloadLogs();
        clearMessage('live');
      } catch (e) {
        if (ctx.alive) showError(`Status of ${pl.name}: ${errText(e)}`, 'live');
      } finally {
        inFlight = false;
      }
    }
    function startPoll() {
      if (stopPoll) return;
      polled = true;
      on.mode('polling');
      stopPoll = ctx.every(pollOnce, 2000);
      pollOnce();
    }
    function endPoll() {
      if (stopPoll) { stopPoll(); stopPoll = null; }
    }
    function open() {
      if (!ctx.alive) return;
      if (typeof EventSource !== 'function') { startPoll(); return; }
      on.mode('connecting');
      const source = new EventSource(`${pl.base}/events`);
      es = source;
      source.addEventListener('status', (ev) => on.status(parseJson(ev.data)));
      source.addEventListener('log', (ev) => { const line = parseJson(ev.data); if (line) on.log(line); });
      source.addEventListener('open', () => {
        endPoll();
        on.mode('live');
        clearMessage('live');
        if (polled) { polled = false; on.reloadLogs(); }
      });
      source.addEventListener('error', () => {
        if (es !== source) return;
        source.close();
        es = null;
        startPoll();
        ctx.after(open, 30000);
      });
    }
    ctx.onClose(() => { if (es) es.close(); es = null; endPoll(); });
    open();
  }

  /* ---- Pipeline header: name, state, URLs, controls, error box ---- */

  function pipelineHeader(pl) {
    const stateBadge = h('span', { class: 'badge badge-grey', testid: 'pipeline-state' }, '…');
    const mode = h('span', { class: 'tag', hidden: true });
    const live = h('span', { class: 'live', testid: 'live-indicator' });
    const urls = h('div', { class: 'urls muted' });
    const loadError = h('div', { class: 'card-error', role: 'alert', hidden: true });
    const errorBox = h('div', { class: 'error-box', testid: 'error-box', role: 'alert', hidden: true });
    const transforms = h('div', { class: 'muted small', hidden: true });

    const adminActions = can('admin')
      ? h('div', { class: 'head-actions' },
        h('a', { class: 'btn', href: `#/edit/${enc(pl.name)}`, testid: 'btn-edit' }, 'Edit'),
        confirmButton('Delete', `Delete pipeline ${pl.name}?`, async () => {
          await api('DELETE', pl.base);
          notify(`Deleted pipeline ${pl.name}`);
          location.hash = '#/';
        }, 'btn-delete'))
      : null;

    const el = h('div', { class: 'pipeline-head' },
      h('div', { class: 'page-head' },
        h('a', { href: '#/', class: 'back' }, '← Pipelines'),
        h('h1', null, pl.name), stateBadge, mode, live, adminActions),
      urls, transforms, loadError,
      can('operator') ? pipelineControls(pl, stateBadge) : null,
      errorBox);

    return {
      el,
      status(s) {
        setText(stateBadge, s.state);
        setClass(stateBadge, badgeClass(s.state));
        errorBox.hidden = !s.error;
        setText(errorBox, s.error ? `Error: ${s.error}` : '');
      },
      mode(m) { mode.hidden = !m; setText(mode, m); },
      detail(d) {
        urls.replaceChildren(
          h('span', { class: 'url' }, asText(d.source && d.source.url)),
          h('span', { class: 'arrow' }, ' → '),
          h('span', { class: 'url' }, asText(d.target && d.target.url)));
        const list = Array.isArray(d.transforms) ? d.transforms : [];
        transforms.hidden = list.length === 0;
        setText(transforms, `Transforms: ${list.map((t) => (t && typeof t === 'object' ? t.plugin || t.name || JSON.stringify(t) : String(t))).join(', ')}`);
      },
      live(state) {
        setText(live, state === 'live' ? '● live' : state === 'polling' ? '○ polling' : '… connecting');
        setClass(live, `live live-${state}`);
      },
      error(e) { loadError.hidden = false; setText(loadError, errText(e)); },
    };
  }

  /** Start/stop/pause/resume: only built for operator and admin. */
  function pipelineControls(pl, stateBadge) {
    const restart = h('input', { type: 'checkbox', testid: 'start-restart' });
    const buttons = [];
    const control = (verb) => async () => {
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const opts = verb === 'start' ? { json: { restart: restart.checked } } : {};
        const r = await api('POST', `${pl.base}/${verb}`, opts);
        if (r && r.state && pl.ctx.alive) {
          setText(stateBadge, r.state);
          setClass(stateBadge, badgeClass(r.state));
        }
        notify(`${verb[0].toUpperCase()}${verb.slice(1)} requested for ${pl.name}`);
        restart.checked = false;
      } catch (e) {
        showError(e);
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    };
    for (const [verb, label] of [['start', 'Start'], ['stop', 'Stop'], ['pause', 'Pause'], ['resume', 'Resume']]) {
      buttons.push(button(label, control(verb), { testid: `btn-${verb}`, class: verb === 'start' ? 'btn primary' : 'btn' }));
    }
    return h('div', { class: 'controls' },
      buttons[0], h('label', { class: 'inline small' }, restart, ' restart from scratch'),
      buttons.slice(1));
  }

  /* ---- Progress: per-table bars patched in place ---- */

  const DONE_PHASES = new Set(['done', 'complete', 'completed', 'finished', 'verified']);

  function percentOf(t) {
    if (DONE_PHASES.has(String(t.phase ?? '').toLowerCase())) return 100;
    const total = Number(t.rows_total) || 0;
    const done = Number(t.rows_done) || 0;
    if (total <= 0) return 0;
    return Math.max(0, Math.min(100, Math.floor((done * 100) / total)));
  }

  function progressCard(pl) {
    const c = card('Progress');
    const info = h('div', { class: 'muted small' });
    const tbody = h('tbody');
    const table = h('table', { class: 'grid', hidden: true },
      thead(['Table', 'Phase', 'Progress', '%', 'Rows', 'Rows/s', 'ETA']), tbody);
    const empty = h('p', { class: 'empty' }, 'No table progress yet.');
    c.body.append(info, table, empty);
    const rows = new Map();

    function row(name) {
      const r = {
        phase: h('td'), pct: h('td', { class: 'num' }), count: h('td', { class: 'num' }),
        rate: h('td', { class: 'num' }), eta: h('td', { class: 'num' }),
        fill: h('div', { class: 'bar-fill' }),
      };
      r.bar = h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, testid: `table-progress-${name}`, 'data-percent': 0 }, r.fill);
      r.tr = h('tr', null, h('td', { class: 'name' }, name), r.phase, h('td', { class: 'barcell' }, r.bar), r.pct, r.count, r.rate, r.eta);
      return r;
    }

    function update(s) {
      const parts = [];
      if (s.run != null) parts.push(`Run #${s.run}`);
      if (s.started_at) parts.push(`started ${fmtTime(s.started_at)}`);
      const tables = Array.isArray(s.tables) ? s.tables : [];
      const rate = tables.reduce((sum, t) => sum + (Number(t.rows_per_s) || 0), 0);
      if (tables.length) parts.push(`${fmtRate(rate)} rows/s in total`);
      setText(info, parts.join(' · ') || 'No run yet');
      const seen = new Set();
      tables.forEach((t, i) => {
        seen.add(t.name);
        let r = rows.get(t.name);
        if (!r) { r = row(t.name); rows.set(t.name, r); }
        if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
        const pct = percentOf(t);
        setAttr(r.bar, 'data-percent', pct);
        setAttr(r.bar, 'aria-valuenow', pct);
        if (r.fill.style.width !== `${pct}%`) r.fill.style.width = `${pct}%`;
        setClass(r.bar, pct >= 100 ? 'bar bar-done' : 'bar');
        setText(r.pct, `${pct}%`);
        setText(r.phase, t.phase);
        setText(r.count, `${fmtNum(t.rows_done)} / ${t.rows_total == null ? '?' : fmtNum(t.rows_total)}`);
        setText(r.rate, fmtRate(t.rows_per_s));
        setText(r.eta, pct >= 100 ? '—' : fmtDuration(t.eta_s));
      });
      for (const [name, r] of rows) {
        if (!seen.has(name)) { r.tr.remove(); rows.delete(name); }
      }
      table.hidden = tables.length === 0;
      empty.hidden = tables.length !== 0;
      c.error(null);
    }
    return { el: c.el, update, error: c.error };
  }

  /* ---- Lag chart: last hour from …/lag, extended by each status event ---- */

  function lagCard(pl) {
    const c = card('Lag, last hour');
    const now = h('div', { class: 'muted small' }, 'Current lag: —');
    const canvas = h('canvas', { class: 'chart', testid: 'lag-chart', 'data-points': 0, 'data-back-points': 0 });
    // Shown once a two-way sync's leg back has a line.
    const swatch = (background) => {
      const el = h('span', { class: 'swatch' });
      el.style.background = background; // CSSOM: the page's CSP refuses style attributes
      return el;
    };
    const [dash, gap] = BACK_DASH;
    const legend = h('div', { class: 'chart-legend small', testid: 'lag-legend', hidden: true },
      h('span', null, swatch(LAG_COLOR), 'A → B'),
      h('span', null, swatch(`repeating-linear-gradient(90deg, ${BACK_COLOR} 0 ${dash}px, transparent ${dash}px ${dash + gap}px)`), 'B → A'));
    c.body.append(now, legend, canvas);
    let points = [];

    const redraw = () => {
      if (!pl.ctx.alive) return;
      const backs = drawLineChart(canvas, points, HOUR);
      if (legend.hidden !== !backs) legend.hidden = !backs;
    };
    const trim = () => {
      const cut = Date.now() - HOUR;
      if (points.length && points[0].at < cut) points = points.filter((p) => p.at >= cut);
    };
    const load = sectionLoader(pl.ctx, c, async () => {
      const data = await api('GET', `${pl.base}/lag?minutes=60`);
      if (!pl.ctx.alive) return;
      const loaded = lagPoints(Array.isArray(data) ? data : []);
      const last = loaded.length ? loaded[loaded.length - 1].at : -Infinity;
      points = loaded.concat(points.filter((p) => p.at > last));
      trim();
      redraw();
    });
    function status(s) {
      const lag = s.lag;
      const ms = (l) => (l && l.ms != null && Number.isFinite(Number(l.ms)) ? Number(l.ms) : null);
      // As the service samples: a point while either leg has a lag, A → B
      // caught up (0) while only the leg back has applied changes.
      const ab = ms(lag);
      const ba = ms(s.back);
      if (ab != null || ba != null) {
        points.push({ at: Date.now(), lag_ms: ab == null ? 0 : ab, back_lag_ms: ba });
      }
      // A two-way sync: the stream back from side B too.
      const back = s.back
        ? ` · B → A: ${fmtLag(s.back.ms)}, ${fmtNum(s.back.changes)} changes`
        : '';
      setText(now, lag
        ? `Current lag: ${fmtLag(lag.ms)} · ${fmtNum(lag.changes)} changes · ${fmtNum(lag.transactions)} transactions streamed${back}`
        : 'Current lag: —');
      trim();
      redraw();
    }
    return { el: c.el, load, status, redraw };
  }

  /* ---- Workers of a pipeline run on the cluster (`dmp serve --cluster`) ---- */

  const WORK_ROWS = 300;

  function clusterCard(pl) {
    const c = card('Workers');
    c.el.hidden = true;
    const summary = h('div', { class: 'muted small', testid: 'cluster-summary' }, '—');
    const workers = h('div');
    const work = h('div');
    c.body.append(summary, workers, work);

    function workerTable(list) {
      if (!list.length) return h('p', { class: 'empty' }, 'No worker has reported yet.');
      return h('table', { class: 'grid' },
        thead(['Worker', 'Chunks done', 'Rows', 'Copying now']),
        h('tbody', null, list.map((w) => h('tr', { testid: `cluster-worker-${w.name}` },
          h('td', { class: 'mono' }, w.name), h('td', { class: 'num' }, fmtNum(w.chunks_done)),
          h('td', { class: 'num' }, fmtNum(w.rows)),
          h('td', null, (w.copying || []).join(', ') || '—')))));
    }
    function workTable(all) {
      if (!all.length) return h('p', { class: 'empty' }, 'No chunk taken yet.');
      // What moves or needs a look first; a load of thousands of chunks
      // shows its first WORK_ROWS.
      const rank = { running: 0, failed: 1 };
      const list = all.map((w, i) => [rank[w.state] ?? 2, i, w])
        .sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) => x[2]).slice(0, WORK_ROWS);
      const more = all.length - list.length;
      return h('div', null, h('table', { class: 'grid' },
        thead(['Table', 'Chunk', 'State', 'Worker', 'Deliveries', 'Rows', 'Error']),
        h('tbody', null, list.map((w) => {
          const chunk = w.chunk == null ? 'finish' : String(w.chunk);
          const id = w.table == null ? 'cluster-work-finish' : `cluster-work-${w.table}-${chunk}`;
          return h('tr', { testid: id, 'data-worker': w.worker, 'data-state': w.state },
            h('td', null, w.table ?? '(pipeline)'), h('td', { class: 'num' }, chunk),
            h('td', null, badge(w.state)), h('td', { class: 'mono' }, w.worker),
            h('td', { class: 'num' }, fmtNum(w.attempts)), h('td', { class: 'num' }, fmtNum(w.rows)),
            h('td', { class: 'error-cell', title: w.error || '' }, w.error || ''));
        }))), more > 0 ? h('p', { class: 'muted small' }, `${fmtNum(more)} more done, not shown.`) : null);
    }
    const load = sectionLoader(pl.ctx, c, async () => {
      const p = await api('GET', `${pl.base}/placement`);
      if (!pl.ctx.alive) return;
      if (!p) {
        setText(summary, 'The cluster runs nothing of this pipeline now.');
        workers.replaceChildren();
        work.replaceChildren();
        return;
      }
      const list = Array.isArray(p.work) ? p.work : [];
      const ws = Array.isArray(p.workers) ? p.workers : [];
      if (p.stream) {
        const s = p.stream;
        setText(summary, `Run ${p.run} · change stream`);
        workers.replaceChildren(h('p', { testid: 'cluster-stream', 'data-worker': s.worker },
          `Held by ${s.worker} (epoch ${s.epoch}) · ${fmtNum(s.changes)} changes · lag ${fmtLag(s.lag_ms)}`));
        work.replaceChildren();
        return;
      }
      const done = list.filter((w) => w.state === 'done').length;
      setText(summary, `Run ${p.run} · ${ws.length} worker(s) · ${list.length} piece(s) of work taken, ${done} done`);
      workers.replaceChildren(workerTable(ws));
      work.replaceChildren(workTable(list));
    });
    let shown = false;
    function status(s) {
      const on = s.place === 'cluster';
      c.el.hidden = !on;
      if (on && !shown) pl.bg(load);
      // The last word once a run ends.
      if (on && shown && !isActive(s.state)) pl.bg(load);
      shown = on;
    }
    return { el: c.el, load, status };
  }

  /* ---- Change stream (cdc modes) ---- */

  function streamCard(pl) {
    const c = card('Change stream');
    c.el.hidden = true;
    const dl = h('dl', { class: 'kv' });
    c.body.append(dl);
    if (can('admin')) {
      c.actions.append(confirmButton('Drop slot', 'Drop the replication slot and publication?', async () => {
        await api('DELETE', `${pl.base}/stream`);
        notify(`Dropped the change stream of ${pl.name}`);
        load();
      }, 'stream-drop'));
    }
    const load = sectionLoader(pl.ctx, c, async () => {
      const s = await api('GET', `${pl.base}/stream`);
      if (!pl.ctx.alive) return;
      const v = s || {};
      dl.replaceChildren(
        h('dt', null, 'Source position'), h('dd', { class: 'mono' }, asText(v.source_position)),
        h('dt', null, 'Target position'), h('dd', { class: 'mono' }, asText(v.target_position)),
        h('dt', null, 'Confirmed position'), h('dd', { class: 'mono' }, asText(v.confirmed_position)),
        h('dt', null, 'Retained at the source'), h('dd', null, fmtBytes(v.retained_bytes)));
    });
    return { el: c.el, load };
  }

  /* ---- Recent log lines (initial fetch, then `log` events) ---- */

  const LEVELS = { trace: 0, debug: 1, info: 2, warn: 3, warning: 3, error: 4 };

  function logCard(pl) {
    const c = card('Recent log');
    const level = h('select', { class: 'small', testid: 'log-level', 'aria-label': 'Log level' },
      ['debug', 'info', 'warn', 'error'].map((l) => h('option', { value: l, selected: l === 'info' }, l)));
    c.actions.append(level);
    const box = h('div', { class: 'log', testid: 'log-lines' });
    const placeholder = h('div', { class: 'muted log-empty' }, 'No log lines.');
    c.body.append(box);
    const MAX = 500;

    const shown = (l) => (LEVELS[String(l.level).toLowerCase()] ?? 2) >= LEVELS[level.value];
    const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    const lineEl = (l) => h('div', { class: `log-line lvl-${cssToken(l.level)}` },
      h('span', { class: 'log-at', title: fmtTime(l.at) }, fmtClock(l.at)),
      h('span', { class: 'log-lvl' }, String(l.level ?? '').toUpperCase()),
      h('span', { class: 'log-msg' }, l.message ?? ''));

    function replace(lines) {
      const stick = atBottom();
      const keep = lines.filter(shown).slice(-MAX);
      box.replaceChildren(...(keep.length ? keep.map(lineEl) : [placeholder]));
      if (stick || !box.dataset.scrolled) box.scrollTop = box.scrollHeight;
      box.dataset.scrolled = '1';
    }
    function addLine(l) {
      if (!pl.ctx.alive || !l || !shown(l)) return;
      const stick = atBottom();
      placeholder.remove();
      box.append(lineEl(l));
      while (box.childElementCount > MAX) box.firstElementChild.remove();
      if (stick) box.scrollTop = box.scrollHeight;
    }
    const load = sectionLoader(pl.ctx, c, async () => {
      const lines = await api('GET', `${pl.base}/logs?level=${enc(level.value)}&limit=200`);
      if (pl.ctx.alive) replace(Array.isArray(lines) ? lines : []);
    });
    level.addEventListener('change', load);
    return { el: c.el, load, append: addLine };
  }

  /* ---- Runs history ---- */

  function runsCard(pl) {
    const c = card('Runs');
    const load = sectionLoader(pl.ctx, c, async () => {
      const runs = await api('GET', `${pl.base}/runs`);
      if (!pl.ctx.alive) return;
      const list = Array.isArray(runs) ? runs : [];
      if (!list.length) { c.body.replaceChildren(h('p', { class: 'empty' }, 'No runs yet.')); return; }
      c.body.replaceChildren(h('table', { class: 'grid' },
        thead(['Run', 'Mode', 'Status', 'Started', 'Finished', 'Duration', 'Rows', 'Rejected', 'Error']),
        h('tbody', null, list.slice(0, 50).map((r) => {
          const a = toDate(r.started_at);
          const b = toDate(r.finished_at);
          return h('tr', null,
            h('td', { class: 'num' }, `#${r.run}`), h('td', null, r.mode ?? '—'), h('td', null, badge(r.status)),
            h('td', null, fmtTime(r.started_at)), h('td', null, fmtTime(r.finished_at)),
            h('td', { class: 'num' }, a && b ? fmtDuration((b - a) / 1000) : '—'),
            h('td', { class: 'num' }, fmtNum(r.rows)), h('td', { class: 'num' }, fmtNum(r.rejected)),
            h('td', { class: 'error-cell', title: r.error || '' }, r.error || ''));
        }))));
    });
    return { el: c.el, load };
  }

  /* ---- Dead letters: groups for all; rows, replay and purge for operators ---- */

  function deadLetterCard(pl) {
    const count = h('span', { class: 'count', testid: 'dlq-count' }, '0');
    const c = card(['Dead letters ', count]);
    const op = can('operator');
    const open = new Set();
    let lastJson = '';

    async function replay(body, what) {
      const r = await api('POST', `${pl.base}/dead-letters/replay`, { json: body });
      const text = `Replayed ${fmtNum(r && r.replayed)} dead letters of ${what}, ${fmtNum(r && r.still_failing)} failed again`;
      if (r && Number(r.still_failing) > 0) showError(text); else notify(text);
      lastJson = '';
      await load();
    }
    async function purge(body, what) {
      const r = await api('POST', `${pl.base}/dead-letters/purge`, { json: body });
      notify(`Purged ${fmtNum(r && r.purged)} dead letters of ${what}`);
      lastJson = '';
      await load();
    }
    if (op) {
      const all = button('Replay all', () => busy(all, () => replay({}, 'all tables')), { testid: 'dlq-replay-all' });
      c.actions.append(all, confirmButton('Purge all', 'Purge every dead letter?', () => purge({ all: true }, 'all tables'), 'dlq-purge-all'));
    }

    function rowsPanel(table, cols) {
      const body = h('div', { class: 'dlq-rows' }, h('p', { class: 'muted' }, 'Loading rows…'));
      const tr = h('tr', { class: 'detail' }, h('td', { colSpan: cols }, body));
      (async () => {
        try {
          const list = await api('GET', `${pl.base}/dead-letters/rows?table=${enc(table)}&limit=100`);
          if (!pl.ctx.alive) return;
          const items = Array.isArray(list) ? list : [];
          body.replaceChildren(items.length ? h('table', { class: 'grid inner' },
            thead(['Id', 'Stage', 'At', 'Error', 'Row', '']),
            h('tbody', null, items.map((d) => {
              const again = button('Replay', () => busy(again, () => replay({ ids: [d.id] }, `row ${d.id}`)), { class: 'btn small' });
              return h('tr', null,
                h('td', { class: 'num' }, d.id), h('td', null, d.stage ?? ''), h('td', null, fmtTime(d.at)),
                h('td', { class: 'error-cell wrap' }, d.error ?? ''),
                h('td', null, h('code', { class: 'row-json' }, asText(d.row))),
                h('td', { class: 'actions' }, again,
                  confirmButton('Purge', 'Purge?', () => purge({ ids: [d.id] }, `row ${d.id}`), null, 'btn small danger')));
            }))) : h('p', { class: 'empty' }, 'No rows.'));
          if (items.length >= 100) body.append(h('p', { class: 'muted small' }, 'Showing the first 100 rows.'));
        } catch (e) {
          if (pl.ctx.alive) body.replaceChildren(h('div', { class: 'card-error', role: 'alert' }, errText(e)));
        }
      })();
      return tr;
    }

    function render(groups) {
      const total = groups.reduce((sum, g) => sum + (Number(g.rows) || 0), 0);
      setText(count, String(total));
      if (!groups.length) { c.body.replaceChildren(h('p', { class: 'empty' }, 'No dead letters.')); return; }
      const byTable = new Map();
      for (const g of groups) {
        if (!byTable.has(g.table)) byTable.set(g.table, []);
        byTable.get(g.table).push(g);
      }
      const cols = op ? 5 : 4;
      const tbody = h('tbody');
      for (const [table, list] of byTable) {
        list.forEach((g, i) => {
          const tr = h('tr', null,
            i === 0 ? h('td', { rowSpan: list.length, class: 'name' }, table) : null,
            h('td', null, g.stage ?? ''), h('td', { class: 'num' }, fmtNum(g.rows)),
            h('td', { class: 'error-cell', title: g.top_error || '' }, g.top_error ? `${g.top_error} (${fmtNum(g.top_error_rows)})` : ''));
          if (op && i === 0) tr.append(h('td', { rowSpan: list.length, class: 'actions' }, tableActions(table)));
          tbody.append(tr);
        });
        if (op && open.has(table)) tbody.append(rowsPanel(table, cols));
      }
      c.body.replaceChildren(h('table', { class: 'grid' },
        thead(['Table', 'Stage', 'Rows', 'Top error'].concat(op ? [''] : [])), tbody));
    }

    function tableActions(table) {
      const show = button(open.has(table) ? 'Hide rows' : 'Show rows', () => {
        if (open.has(table)) open.delete(table); else open.add(table);
        render(JSON.parse(lastJson || '[]'));
      }, { class: 'btn small', testid: `dlq-show-${table}` });
      const again = button('Replay', () => busy(again, () => replay({ table }, table)), { class: 'btn small', testid: `dlq-replay-${table}` });
      return [show, again, confirmButton('Purge', `Purge ${table}?`, () => purge({ table }, table), `dlq-purge-${table}`, 'btn small danger')];
    }

    const load = sectionLoader(pl.ctx, c, async () => {
      const groups = await api('GET', `${pl.base}/dead-letters`);
      if (!pl.ctx.alive) return;
      const json = JSON.stringify(groups ?? []);
      if (json === lastJson) return; // unchanged: keep open row panels as they are
      lastJson = json;
      render(Array.isArray(groups) ? groups : []);
    });
    return { el: c.el, load };
  }

  /* ---- Conflicts of a two-way sync: entries for all; rows and resolving for operators ---- */

  function conflictCard(pl) {
    const count = h('span', { class: 'count', testid: 'conflicts-count' }, '0');
    const c = card(['Conflicts ', count]);
    c.el.hidden = true;
    const op = can('operator');
    const all = h('input', { type: 'checkbox', testid: 'conflicts-all' });
    c.actions.append(h('label', { class: 'inline small' }, all, ' every entry (settled and resolved too)'));
    let lastJson = '';

    const isOpen = (e) => e.decision === 'parked' && e.resolution == null;

    async function resolve(e, side) {
      const r = await api('POST', `${pl.base}/conflicts/${enc(e.id)}/resolve`, { json: { side } });
      const row = r && r.row === 'deleted' ? 'deleted on' : 'written to';
      notify(`Conflict ${e.id} resolved by side ${side.toUpperCase()}: its row ${row} side ${String(r && r.other_side).toUpperCase()}`);
      lastJson = '';
      await load();
    }

    /** A row as logged: its JSON, or what its absence means. */
    function rowCell(v, none) {
      return h('td', null, v == null ? h('span', { class: 'muted' }, none) : h('code', { class: 'row-json' }, asText(v)));
    }

    function entryRow(e) {
      const remote = String(e.remote_side ?? '').toUpperCase();
      const here = String(e.side ?? '').toUpperCase();
      const tr = h('tr', { testid: `conflict-${e.id}`, 'data-open': isOpen(e) ? 'true' : 'false' },
        h('td', { class: 'mono' }, e.id), h('td', { class: 'name' }, e.table_name ?? ''),
        h('td', null, h('code', null, asText(e.key))), h('td', null, e.kind ?? ''),
        h('td', null, e.decision ?? ''),
        h('td', null, `side ${remote}'s change, logged on side ${here}`),
        h('td', { title: asText(e.logged_at) }, fmtTime(e.logged_at)),
        h('td', null, e.resolution ? `${e.resolution} (${fmtTime(e.resolved_at)})` : '—'));
      if (!op) return tr;
      tr.append(rowCell(e.remote_new, 'deleted'), rowCell(e.local_row, 'none'));
      const actions = h('td', { class: 'actions' });
      if (isOpen(e)) {
        for (const side of ['a', 'b']) {
          const label = `Resolve ${side.toUpperCase()}`;
          const question = `Keep side ${side.toUpperCase()}'s row at this key on both sides?`;
          actions.append(confirmButton(label, question, () => resolve(e, side),
            `conflict-resolve-${side}-${e.id}`, 'btn small'));
        }
      }
      tr.append(actions);
      return tr;
    }

    function render(entries) {
      setText(count, String(entries.filter(isOpen).length));
      if (!entries.length) {
        c.body.replaceChildren(h('p', { class: 'empty' }, all.checked ? 'No conflicts logged.' : 'No parked conflicts wait.'));
        return;
      }
      const labels = ['Id', 'Table', 'Key', 'Kind', 'Decision', 'Change', 'Logged', 'Resolution']
        .concat(op ? ['Remote row after', 'Local row then', ''] : []);
      c.body.replaceChildren(h('table', { class: 'grid' }, thead(labels), h('tbody', null, entries.map(entryRow))));
    }

    const load = sectionLoader(pl.ctx, c, async () => {
      const entries = await api('GET', `${pl.base}/conflicts?all=${all.checked ? 'true' : 'false'}`);
      if (!pl.ctx.alive) return;
      const json = JSON.stringify(entries ?? []);
      if (json === lastJson) return; // unchanged: keep an open confirmation as it is
      lastJson = json;
      render(Array.isArray(entries) ? entries : []);
    });
    all.addEventListener('change', () => { lastJson = ''; load(); });
    return { el: c.el, load };
  }

  /* ---- Verify: compare source and target, optionally repair ---- */

  function verifyCard(pl) {
    const c = card('Verify');
    const result = h('div', { class: 'verify-result', testid: 'verify-result' }, h('p', { class: 'muted' }, 'Loading…'));
    c.body.append(result);
    let polling = false;

    if (can('operator')) {
      const start = (repair) => async () => {
        await api('POST', `${pl.base}/verify`, { json: { repair } });
        notify(repair ? 'Verify and repair started' : 'Verify started');
        render({ state: 'running' });
        poll();
      };
      const v = button('Verify', () => busy(v, start(false)), { testid: 'btn-verify' });
      const vr = button('Verify and repair', () => busy(vr, start(true)), { testid: 'btn-verify-repair' });
      c.actions.append(v, vr);
    }

    function render(v) {
      const state = (v && v.state) || 'none';
      if (state === 'none') {
        result.replaceChildren(h('p', { class: 'empty' }, 'No verification has run yet.'));
        return;
      }
      const parts = [h('div', { class: 'verify-head' }, badge(state),
        v.equal === true ? h('span', { class: 'badge badge-green' }, 'source and target match') : null,
        v.equal === false ? h('span', { class: 'badge badge-red' }, 'differences found') : null,
        state === 'running' ? h('span', { class: 'muted' }, 'comparing…') : null)];
      if (v.error) parts.push(h('div', { class: 'card-error', role: 'alert' }, v.error));
      // The server's report: per table its counts and (for operators) the
      // first differing rows with their keys.
      const reported = v.report && Array.isArray(v.report.tables) ? v.report.tables : [];
      const tables = reported.map((t) => ({
        name: t.table,
        source_rows: t.source_rows,
        target_rows: t.target_rows,
        missing: t.missing_in_target,
        extra: t.extra_in_target,
        differing: t.differing_rows,
        rows: Array.isArray(t.differences) ? t.differences : [],
      }));
      if (tables.length) {
        parts.push(h('table', { class: 'grid' },
          thead(['Table', 'Source rows', 'Target rows', 'Missing', 'Extra', 'Differing']),
          h('tbody', null, tables.map((t) => {
            const bad = Number(t.missing) || Number(t.extra) || Number(t.differing);
            return h('tr', { class: bad ? 'row-failed' : null },
              h('td', { class: 'name' }, t.name), h('td', { class: 'num' }, fmtNum(t.source_rows)),
              h('td', { class: 'num' }, fmtNum(t.target_rows)), h('td', { class: 'num' }, fmtNum(t.missing)),
              h('td', { class: 'num' }, fmtNum(t.extra)), h('td', { class: 'num' }, fmtNum(t.differing)));
          }))));
        for (const t of tables) {
          const rows = Array.isArray(t.rows) ? t.rows : [];
          if (!rows.length) continue;
          parts.push(h('h3', null, `Differing rows of ${t.name}`), h('table', { class: 'grid inner' },
            thead(['Key', 'Kind']),
            h('tbody', null, rows.slice(0, 200).map((r) => h('tr', null,
              h('td', null, h('code', null, asText(r.key))), h('td', null, badge(r.kind.replace(/_/g, ' '), { class: `badge badge-${r.kind === 'differs' ? 'amber' : 'red'}` })))))));
          if (rows.length > 200) parts.push(h('p', { class: 'muted small' }, `…and ${rows.length - 200} more.`));
        }
      }
      result.replaceChildren(...parts);
    }

    async function fetchResult() {
      let v;
      try {
        v = await api('GET', `${pl.base}/verify`);
      } catch (e) {
        // 404: not verified since the service started.
        if (e.status !== 404) throw e;
        v = { state: 'none' };
      }
      if (pl.ctx.alive) c.error(null);
      return v;
    }

    /** Polls every second while a verification runs (the first 3 s may still show the old result). */
    function poll() {
      if (polling) return;
      polling = true;
      const t0 = Date.now();
      const step = async () => {
        try {
          const v = await fetchResult();
          if (!pl.ctx.alive) return;
          const early = Date.now() - t0 < 3000;
          if (v && v.state === 'running') { render(v); pl.ctx.after(step, 1000); return; }
          if (early) { pl.ctx.after(step, 1000); return; }
          render(v);
        } catch (e) {
          if (pl.ctx.alive) c.error(e);
        }
        polling = false;
      };
      pl.ctx.after(step, 700);
    }

    const load = sectionLoader(pl.ctx, c, async () => {
      const v = await fetchResult();
      if (!pl.ctx.alive || polling) return;
      render(v);
      if (v && v.state === 'running') poll();
    });
    return { el: c.el, load };
  }

  /* ---- Plugins: versions, upload (admin), roll back (admin) ---- */

  function pluginCard(pl) {
    const c = card('Plugins');
    const admin = can('admin');

    function block(p) {
      const versions = (Array.isArray(p.versions) ? p.versions : []).slice().sort((a, b) => b.version - a.version);
      const rows = versions.map((v) => {
        const active = v.version === p.active;
        let action = null;
        if (admin && !active) {
          action = button(v.version < p.active ? 'Roll back' : 'Activate', () => busy(action, async () => {
            await api('POST', `${pl.base}/plugins/${enc(p.name)}/rollback`, { json: { version: v.version } });
            notify(`${p.name}: version ${v.version} is active`);
            await load();
          }), { class: 'btn small', testid: `plugin-rollback-${p.name}-${v.version}` });
        }
        return h('tr', { class: active ? 'row-active' : null },
          h('td', null, `v${v.version} `, active ? h('span', { class: 'badge badge-green' }, 'active') : null),
          h('td', { class: 'mono', title: v.sha256 || '' }, shortHash(v.sha256)),
          h('td', { class: 'num' }, fmtBytes(v.size)), h('td', null, fmtTime(v.uploaded_at)),
          h('td', null, v.uploaded_by ?? '—'), admin ? h('td', { class: 'actions' }, action) : null);
      });
      const parts = [h('h3', null, p.name, h('span', { class: 'muted small' }, p.active ? ` · active version ${p.active}` : ' · no active version'))];
      parts.push(rows.length
        ? h('table', { class: 'grid' }, thead(['Version', 'SHA-256', 'Size', 'Uploaded', 'By'].concat(admin ? [''] : [])), h('tbody', null, rows))
        : h('p', { class: 'empty' }, 'No versions uploaded.'));
      if (admin) parts.push(uploadForm(p.name));
      return h('div', { class: 'plugin' }, parts);
    }

    /** Choosing a file POSTs its raw bytes as application/wasm. */
    function uploadForm(plugin) {
      const file = h('input', { type: 'file', accept: '.wasm,application/wasm', testid: `plugin-upload-${plugin}` });
      const status = h('span', { class: 'small' });
      file.addEventListener('change', async () => {
        const f = file.files && file.files[0];
        if (!f) return;
        file.disabled = true;
        setClass(status, 'small muted');
        setText(status, `Uploading ${f.name}…`);
        try {
          const bytes = await f.arrayBuffer();
          const r = await api('POST', `${pl.base}/plugins/${enc(plugin)}`, { body: bytes, type: 'application/wasm' });
          notify(`${plugin}: uploaded version ${r && r.version != null ? r.version : '?'}`);
          await load();
        } catch (e) {
          setClass(status, 'small error-text');
          setText(status, `Upload refused: ${errText(e)}`);
        } finally {
          file.disabled = false;
          file.value = '';
        }
      });
      return h('form', { class: 'upload', onsubmit: (ev) => ev.preventDefault() },
        h('label', null, 'Upload a new version (.wasm): ', file), status);
    }

    const load = sectionLoader(pl.ctx, c, async () => {
      const list = await api('GET', `${pl.base}/plugins`);
      if (!pl.ctx.alive) return;
      const plugins = Array.isArray(list) ? list : [];
      c.body.replaceChildren(...(plugins.length ? plugins.map(block) : [h('p', { class: 'empty' }, 'This pipeline uses no plugins.')]));
    });
    return { el: c.el, load };
  }

  /* ------------------------------------------------------------------ *
   * Create / edit (#/new, #/edit/NAME): a form kept in sync with a TOML *
   * editor; "Edit TOML directly" makes the textarea the source.         *
   * ------------------------------------------------------------------ */

  /** TOML basic string with escapes. */
  function tomlString(s) {
    const map = { '\\': '\\\\', '"': '\\"', '\b': '\\b', '\t': '\\t', '\n': '\\n', '\f': '\\f', '\r': '\\r' };
    return `"${String(s).replace(/[\\"\u0000-\u001f\u007f]/g, (ch) => map[ch] || `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
  }

  function genToml(v) {
    const out = ['[pipeline]', `name = ${tomlString(v.name)}`, '',
      '[source]', `url = ${tomlString(v.source)}`, '',
      '[target]', `url = ${tomlString(v.target)}`, ''];
    if (v.tables.length) out.push('[tables]', `include = [${v.tables.map(tomlString).join(', ')}]`, '');
    out.push('[run]', `mode = ${tomlString(v.mode)}`);
    if (v.every) out.push(`every = ${tomlString(v.every)}`);
    return `${out.join('\n')}\n`;
  }

  /** One TOML value: a string ("…" or '…') or a one-line array of strings; undefined otherwise. */
  function parseTomlValue(src) {
    let i = 0;
    const ws = () => { while (i < src.length && (src[i] === ' ' || src[i] === '\t')) i++; };
    const ESC = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', '"': '"', '\\': '\\' };
    function str() {
      const q = src[i];
      if (q !== '"' && q !== "'") return undefined;
      i++;
      let out = '';
      while (i < src.length) {
        const ch = src[i++];
        if (ch === q) return out;
        if (q === '"' && ch === '\\') {
          const e = src[i++];
          if (ESC[e] !== undefined) out += ESC[e];
          else if (e === 'u' || e === 'U') {
            const n = e === 'u' ? 4 : 8;
            const hex = src.slice(i, i + n);
            if (hex.length !== n || !/^[0-9a-fA-F]+$/.test(hex)) return undefined;
            out += String.fromCodePoint(parseInt(hex, 16));
            i += n;
          } else return undefined;
        } else out += ch;
      }
      return undefined;
    }
    try {
      ws();
      let val;
      if (src[i] === '[') {
        i++;
        val = [];
        ws();
        if (src[i] === ']') i++;
        else {
          for (;;) {
            ws();
            const s = str();
            if (s === undefined) return undefined;
            val.push(s);
            ws();
            if (src[i] === ',') { i++; ws(); if (src[i] === ']') { i++; break; } continue; }
            if (src[i] === ']') { i++; break; }
            return undefined;
          }
        }
      } else {
        val = str();
        if (val === undefined) return undefined;
      }
      ws();
      return i === src.length ? val : undefined; // trailing comments would be lost: not simple
    } catch (_) {
      return undefined;
    }
  }

  /** Reads the form's fields from TOML; `extra` lists what the form cannot represent. */
  function parseSimpleToml(text) {
    const KNOWN = { 'pipeline.name': 'name', 'source.url': 'source', 'target.url': 'target', 'tables.include': 'tables', 'run.mode': 'mode', 'run.every': 'every' };
    const SECTIONS = ['pipeline', 'source', 'target', 'tables', 'run'];
    const v = { name: '', source: '', target: '', tables: [], mode: 'full', every: '', extra: [] };
    let section = '';
    for (const raw of String(text).split(/\r?\n/)) {
      const line = raw.trim();
      if (!line) continue;
      if (line.startsWith('#')) { v.extra.push('comments'); continue; }
      const sec = /^\[\s*([A-Za-z0-9_-]+)\s*\]$/.exec(line);
      if (sec) {
        section = sec[1];
        if (!SECTIONS.includes(section)) v.extra.push(`[${section}]`);
        continue;
      }
      if (line.startsWith('[')) { section = '?'; v.extra.push(line.replace(/\s*#.*$/, '')); continue; }
      const kv = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(line);
      const key = kv ? `${section}.${kv[1]}` : line;
      const field = kv && KNOWN[key];
      if (!field) { if (section !== '?' && SECTIONS.includes(section)) v.extra.push(key); continue; }
      const val = parseTomlValue(kv[2]);
      const okType = field === 'tables' ? Array.isArray(val) : typeof val === 'string';
      if (!okType || (field === 'mode' && !MODES.includes(val))) { v.extra.push(key); continue; }
      v[field] = val;
    }
    v.extra = [...new Set(v.extra)];
    v.simple = v.extra.length === 0;
    return v;
  }

  function splitList(s) {
    return String(s).split(',').map((x) => x.trim()).filter(Boolean);
  }

  function renderForm(ctx, main, editName) {
    const editing = editName != null;
    document.title = `${editing ? `Edit ${editName}` : 'New pipeline'} · DMP`;
    if (!can('admin')) { denied(main, 'Creating and editing pipelines needs the admin role.'); return; }

    const field = (label, input, hint) => h('div', { class: 'field' },
      h('label', { for: input.id }, label), input, hint ? h('div', { class: 'hint' }, hint) : null);
    const text = (id, testid, placeholder) => h('input', { type: 'text', id, testid, placeholder, autocomplete: 'off', spellcheck: 'false' });
    const f = {
      name: text('f-name', 'form-name', 'orders-to-warehouse'),
      mode: h('select', { id: 'f-mode', testid: 'form-mode' }, MODES.map((m) => h('option', { value: m }, m))),
      source: text('f-source', 'form-source', 'postgres://user:password@host:5432/db'),
      target: text('f-target', 'form-target', 'sqlite:///data/target.db'),
      tables: text('f-tables', 'form-tables', 'orders, customers, public.*'),
      every: text('f-every', 'form-every', '5m or */5 * * * *'),
    };
    if (editing) { f.name.readOnly = true; f.name.value = editName; }
    const inputs = Object.values(f);
    const toml = h('textarea', { id: 'f-toml', class: 'toml', testid: 'form-toml', rows: 20, spellcheck: 'false', readOnly: true, 'aria-label': 'Pipeline TOML' });
    const direct = h('input', { type: 'checkbox', id: 'f-direct', testid: 'form-toml-direct' });
    const note = h('div', { class: 'note', hidden: true });
    const formError = h('div', { class: 'form-error', testid: 'form-error', role: 'alert', hidden: true });
    const testBtn = h('button', { type: 'button', class: 'btn', testid: 'btn-test' }, 'Test connections');
    const saveBtn = h('button', { type: 'submit', class: 'btn primary', testid: 'btn-save' }, editing ? 'Save changes' : 'Create pipeline');
    const testResult = h('div', { class: 'test-result', testid: 'test-result' });

    const form = h('form', { class: 'pipeline-form', novalidate: true },
      h('div', { class: 'form-grid' },
        h('div', { class: 'fields' },
          field('Name', f.name, editing ? 'The name of a saved pipeline cannot change.' : null),
          field('Mode', f.mode),
          field('Source URL', f.source),
          field('Target URL', f.target, editing ? 'A password shown as *** keeps the stored one.' : null),
          field('Tables to include', f.tables, 'Comma separated names or globs; empty means all tables.'),
          field('Every (schedule, optional)', f.every, 'A duration (5m, 1h) or a cron line; not for cdc modes.')),
        h('div', { class: 'toml-pane' },
          h('div', { class: 'toml-head' }, h('label', { for: 'f-toml' }, 'TOML'),
            h('label', { class: 'inline small' }, direct, ' Edit TOML directly')),
          toml, note)),
      formError,
      h('div', { class: 'form-actions' }, testBtn, saveBtn,
        h('a', { class: 'btn', href: editing ? `#/p/${enc(editName)}` : '#/' }, 'Cancel')),
      testResult);
    main.append(h('div', { class: 'page-head' },
      h('a', { href: editing ? `#/p/${enc(editName)}` : '#/', class: 'back' }, '← Back'),
      h('h1', null, editing ? `Edit ${editName}` : 'New pipeline')), form);

    const readForm = () => ({
      name: f.name.value.trim(), mode: f.mode.value, source: f.source.value.trim(),
      target: f.target.value.trim(), tables: splitList(f.tables.value), every: f.every.value.trim(),
    });
    const fillForm = (v) => {
      if (!editing) f.name.value = v.name;
      f.mode.value = MODES.includes(v.mode) ? v.mode : 'full';
      f.source.value = v.source;
      f.target.value = v.target;
      f.tables.value = v.tables.join(', ');
      f.every.value = v.every;
    };
    const regen = () => { if (!direct.checked) toml.value = genToml(readForm()); };
    const setDirect = (on) => {
      direct.checked = on;
      toml.readOnly = !on;
      for (const el of inputs) el.disabled = on;
      form.classList.toggle('direct', on);
    };
    const showNote = (msg) => { note.hidden = !msg; setText(note, msg || ''); };
    const setError = (e) => { formError.hidden = !e; setText(formError, e ? errText(e) : ''); };

    for (const el of inputs) { el.addEventListener('input', regen); el.addEventListener('change', regen); }
    direct.addEventListener('change', () => {
      if (direct.checked) { setDirect(true); showNote(null); return; }
      const parsed = parseSimpleToml(toml.value);
      if (!parsed.simple) {
        setDirect(true);
        showNote(`The form cannot show ${parsed.extra.slice(0, 4).join(', ')}${parsed.extra.length > 4 ? ', …' : ''}; keep editing the TOML directly, or remove those lines first.`);
        return;
      }
      fillForm(parsed);
      setDirect(false);
      regen();
      showNote(null);
    });

    /** The client-side checks the server would report less clearly. */
    function problem() {
      if (direct.checked) return toml.value.trim() ? null : 'The TOML is empty.';
      const v = readForm();
      if (!v.name) return 'Name is required.';
      if (!v.source) return 'Source URL is required.';
      if (!v.target) return 'Target URL is required.';
      return null;
    }

    testBtn.addEventListener('click', async () => {
      const p = problem();
      if (p) { setError(p); return; }
      setError(null);
      testBtn.disabled = true;
      testResult.replaceChildren(h('p', { class: 'muted' }, 'Testing connections…'));
      try {
        const r = await api('POST', '/api/v1/pipelines/validate', { body: toml.value, type: TOML_TYPE });
        if (ctx.alive) renderValidation(testResult, r || {});
      } catch (e) {
        if (ctx.alive) testResult.replaceChildren(h('div', { class: 'form-error', role: 'alert' }, `Test failed: ${errText(e)}`));
      } finally {
        testBtn.disabled = false;
      }
    });

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const p = problem();
      if (p) { setError(p); return; }
      setError(null);
      saveBtn.disabled = true;
      try {
        const opts = { body: toml.value, type: TOML_TYPE };
        const r = editing
          ? await api('PUT', `/api/v1/pipelines/${enc(editName)}`, opts)
          : await api('POST', '/api/v1/pipelines', opts);
        const saved = (r && r.name) || (editing ? editName : parseSimpleToml(toml.value).name);
        notify(editing ? `Saved pipeline ${saved}` : `Created pipeline ${saved}`);
        location.hash = `#/p/${enc(saved)}`;
      } catch (e) {
        if (ctx.alive) setError(e);
      } finally {
        saveBtn.disabled = false;
      }
    });

    if (!editing) { regen(); return; }
    // Edit: load the stored TOML (secrets masked); use the form when it can show everything.
    toml.value = 'Loading…';
    testBtn.disabled = true;
    saveBtn.disabled = true;
    for (const el of inputs) el.disabled = true;
    api('GET', `/api/v1/pipelines/${enc(editName)}/toml`)
      .then((res) => {
        if (!ctx.alive) return;
        const textValue = typeof res === 'string' ? res : (res && typeof res.toml === 'string' ? res.toml : '');
        const parsed = parseSimpleToml(textValue);
        fillForm(parsed);
        toml.value = textValue;
        if (parsed.simple) { setDirect(false); regen(); } else {
          setDirect(true);
          showNote('This pipeline has settings the form does not cover, so its TOML is edited directly.');
        }
        testBtn.disabled = false;
        saveBtn.disabled = false;
      })
      .catch((e) => {
        if (!ctx.alive) return;
        toml.value = '';
        setError(`Could not load the pipeline: ${errText(e)}`);
      });
  }

  /** The answer of …/validate: tables with their column type mapping. */
  function renderValidation(box, r) {
    const parts = [h('div', { class: 'ok-line' }, h('span', { class: 'badge badge-green' }, 'connections OK'), ' ',
      h('span', { class: 'url' }, asText(r.source && r.source.url ? r.source.url : r.source)), ' → ',
      h('span', { class: 'url' }, asText(r.target && r.target.url ? r.target.url : r.target)))];
    const tables = Array.isArray(r.tables) ? r.tables : [];
    if (!tables.length) parts.push(h('p', { class: 'empty' }, 'No tables matched.'));
    for (const t of tables) {
      const meta = [`~${fmtNum(t.estimated_rows)} rows`, `${fmtNum(t.chunks)} chunks`];
      if (Array.isArray(t.primary_key) && t.primary_key.length) meta.push(`primary key (${t.primary_key.join(', ')})`);
      else meta.push('no primary key');
      parts.push(h('h3', null, t.name, h('span', { class: 'muted small' }, ` · ${meta.join(' · ')}`)));
      const cols = Array.isArray(t.columns) ? t.columns : [];
      parts.push(h('table', { class: 'grid mapping' },
        thead(['Column', 'Model type', '', 'Target type', 'Nullable']),
        h('tbody', null, cols.map((col) => h('tr', null,
          h('td', { class: 'name' }, col.name), h('td', { class: 'mono' }, asText(col.model_type)),
          h('td', { class: 'arrow' }, '→'), h('td', { class: 'mono' }, asText(col.target_type)),
          h('td', null, col.nullable ? 'yes' : 'no'))))));
    }
    const assessment = Array.isArray(r.assessment) ? r.assessment : [];
    if (assessment.length) {
      parts.push(h('h3', null, 'Assessment'), h('ul', { class: 'assessment' }, assessment.map((a) => {
        if (a && typeof a === 'object') {
          const level = a.level || a.severity || '';
          const msg = a.message || a.text || JSON.stringify(a);
          return h('li', { class: `lvl-${cssToken(level)}` }, level ? h('strong', null, `${level}: `) : null, [a.table ? `${a.table}: ` : '', msg].join(''));
        }
        return h('li', null, String(a));
      })));
    }
    box.replaceChildren(...parts);
  }

  /* ------------------------------------------------------------------ *
   * Admin (#/admin): API tokens, users, audit log.                       *
   * ------------------------------------------------------------------ */

  function renderAdmin(ctx, main) {
    document.title = 'Admin · DMP';
    if (!can('admin')) { denied(main, 'The admin page needs the admin role.'); return; }
    main.append(h('div', { class: 'page-head' }, h('h1', null, 'Administration')));
    const audit = auditCard(ctx);
    const tokens = tokensCard(ctx, audit.load);
    const users = usersCard(ctx, audit.load);
    main.append(tokens.el, users.el, audit.el);
    tokens.load(); users.load(); audit.load();
  }

  function roleSelect(testid, id) {
    return h('select', { testid, id }, ROLES.map((r) => h('option', { value: r }, r)));
  }

  function tokensCard(ctx, afterChange) {
    const c = card('API tokens');
    const name = h('input', { type: 'text', id: 'tok-name', testid: 'token-name', placeholder: 'ci-deploy', autocomplete: 'off', required: true });
    const role = roleSelect('token-role', 'tok-role');
    const days = h('input', { type: 'number', id: 'tok-days', testid: 'token-expires', min: 1, step: 1, placeholder: 'never' });
    const create = h('button', { type: 'submit', class: 'btn primary', testid: 'token-create' }, 'Create token');
    const newBox = h('div', { class: 'token-box', hidden: true });
    const list = h('div');
    const form = h('form', { class: 'inline-form', novalidate: true },
      h('label', null, 'Name ', name), h('label', null, 'Role ', role),
      h('label', null, 'Expires in days ', days), create);
    c.body.append(form, newBox, list);

    /** The new token is shown once, in this box only, until dismissed or the page is left. */
    function showToken(r, tokenName) {
      const value = h('code', { class: 'token-value', testid: 'token-value' }, r.token);
      const copy = button('Copy', async () => {
        try { await navigator.clipboard.writeText(r.token); notify('Token copied'); } catch (e) { showError(`Copy failed: ${errText(e)}`); }
      }, { class: 'btn small' });
      const dismiss = button('Done', () => { newBox.replaceChildren(); newBox.hidden = true; }, { class: 'btn small' });
      newBox.replaceChildren(
        h('p', null, h('strong', null, `New token "${tokenName}" (id ${r.id}).`), ' Copy it now: it will not be shown again.'),
        h('div', { class: 'token-line' }, value, copy, dismiss));
      newBox.hidden = false;
    }

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const n = name.value.trim();
      if (!n) { showError('A token needs a name.'); return; }
      const body = { name: n, role: role.value };
      if (days.value.trim()) {
        const d = Number(days.value);
        if (!Number.isInteger(d) || d < 1) { showError('Expires in days must be a whole number of at least 1.'); return; }
        body.expires_days = d;
      }
      await busy(create, async () => {
        const r = await api('POST', '/api/v1/tokens', { json: body });
        if (!ctx.alive) return;
        showToken(r || {}, n);
        form.reset();
        load();
        afterChange();
      });
    });

    const load = sectionLoader(ctx, c, async () => {
      const tokens = await api('GET', '/api/v1/tokens');
      if (!ctx.alive) return;
      const items = Array.isArray(tokens) ? tokens : [];
      if (!items.length) { list.replaceChildren(h('p', { class: 'empty' }, 'No tokens.')); return; }
      list.replaceChildren(h('table', { class: 'grid' },
        thead(['Id', 'Name', 'Role', 'Created', 'Expires', 'Status', '']),
        h('tbody', null, items.map((t) => {
          const exp = toDate(t.expires_at);
          const status = t.revoked ? 'revoked' : exp && exp.getTime() < Date.now() ? 'expired' : 'active';
          return h('tr', null,
            h('td', { class: 'num' }, t.id), h('td', { class: 'name' }, t.name), h('td', null, t.role),
            h('td', null, fmtTime(t.created_at)), h('td', null, t.expires_at ? fmtTime(t.expires_at) : 'never'),
            h('td', null, badge(status)),
            h('td', { class: 'actions' }, t.revoked ? null : confirmButton('Revoke', `Revoke ${t.name}?`, async () => {
              await api('DELETE', `/api/v1/tokens/${enc(t.id)}`);
              notify(`Revoked token ${t.name}`);
              load();
              afterChange();
            }, `token-revoke-${t.id}`, 'btn small danger')));
        }))));
    });
    return { el: c.el, load };
  }

  function usersCard(ctx, afterChange) {
    const c = card('Users');
    const name = h('input', { type: 'text', id: 'user-name', testid: 'user-name', autocomplete: 'off', required: true });
    const role = roleSelect('user-role', 'user-role');
    const password = h('input', { type: 'password', id: 'user-password', testid: 'user-password', autocomplete: 'new-password', required: true });
    const add = h('button', { type: 'submit', class: 'btn primary', testid: 'user-add' }, 'Add user');
    const list = h('div');
    const form = h('form', { class: 'inline-form', novalidate: true },
      h('label', null, 'Name ', name), h('label', null, 'Role ', role), h('label', null, 'Password ', password), add);
    c.body.append(form, list);

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const body = { name: name.value.trim(), role: role.value, password: password.value };
      if (!body.name || !body.password) { showError('A user needs a name and a password.'); return; }
      await busy(add, async () => {
        try {
          await api('POST', '/api/v1/users', { json: body });
        } finally {
          password.value = '';
        }
        notify(`Added user ${body.name}`);
        form.reset();
        load();
        afterChange();
      });
    });

    const load = sectionLoader(ctx, c, async () => {
      const users = await api('GET', '/api/v1/users');
      if (!ctx.alive) return;
      const items = Array.isArray(users) ? users : [];
      list.replaceChildren(items.length
        ? h('table', { class: 'grid narrow' }, thead(['Name', 'Role']),
          h('tbody', null, items.map((u) => h('tr', null, h('td', { class: 'name' }, u.name), h('td', null, u.role)))))
        : h('p', { class: 'empty' }, 'No users.'));
    });
    return { el: c.el, load };
  }

  function auditCard(ctx) {
    const c = card('Audit log');
    const refresh = button('Refresh', () => load(), { class: 'btn small' });
    c.actions.append(refresh);
    const tbody = h('tbody');
    c.body.append(h('table', { class: 'grid', testid: 'audit-table' },
      thead(['Time', 'Who', 'Address', 'Action', 'Target', 'Result']), tbody));
    const load = sectionLoader(ctx, c, async () => {
      const entries = await api('GET', '/api/v1/audit?limit=200');
      if (!ctx.alive) return;
      const items = (Array.isArray(entries) ? entries : []).slice();
      if (items.every((e) => Number.isFinite(Number(e.id)))) items.sort((a, b) => Number(b.id) - Number(a.id));
      tbody.replaceChildren(...(items.length ? items.map((e) => h('tr', null,
        h('td', { title: String(e.at ?? '') }, fmtTime(e.at)), h('td', null, e.who ?? ''), h('td', { class: 'mono' }, e.addr ?? ''),
        h('td', null, e.action ?? ''), h('td', null, e.target ?? ''), h('td', null, badge(e.result))))
        : [h('tr', null, h('td', { colSpan: 6, class: 'empty' }, 'No entries.'))]));
    });
    return { el: c.el, load };
  }

  /* ------------------------------------------------------------------ *
   * Boot: login page or app (session check, header, router).            *
   * ------------------------------------------------------------------ */

  function initLogin() {
    const form = document.getElementById('login-form');
    const user = document.getElementById('login-user');
    const password = document.getElementById('login-password');
    const submit = document.getElementById('login-submit');
    const error = document.getElementById('login-error');
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      if (!user.value.trim() || !password.value) {
        error.textContent = 'Enter a user and a password.';
        error.hidden = false;
        return;
      }
      submit.disabled = true;
      try {
        await api('POST', '/api/v1/session', { json: { user: user.value.trim(), password: password.value }, noRedirect: true });
        password.value = '';
        const back = storage('get') || '';
        storage('del');
        location.assign(`/${/^#\/[^\s]*$/.test(back) ? back : ''}`);
      } catch (e) {
        error.textContent = errText(e);
        error.hidden = false;
        password.select();
      } finally {
        submit.disabled = false;
      }
    });
  }

  function renderHeader() {
    setText(document.getElementById('who-user'), session.user);
    const role = document.getElementById('who-role');
    setText(role, session.role);
    role.className = `role role-${cssToken(session.role)}`;
    document.getElementById('who').hidden = false;
    document.getElementById('nav-admin').hidden = !can('admin');
    const logout = document.getElementById('logout');
    logout.addEventListener('click', async () => {
      logout.disabled = true;
      try {
        await api('DELETE', '/api/v1/session', { noRedirect: true });
      } catch (e) {
        if (e.status !== 401) { showError(`Logout failed: ${errText(e)}`); logout.disabled = false; return; }
      }
      session.csrf = null;
      location.assign('/login');
    });
  }

  async function initApp() {
    const main = document.getElementById('main');
    try {
      const s = await api('GET', '/api/v1/session');
      session.user = s && s.user;
      session.role = s && s.role;
      session.csrf = s && s.csrf;
    } catch (e) {
      if (e.status === 401) return; // on the way to /login
      main.replaceChildren(h('div', { class: 'empty-page' },
        h('h1', null, 'Cannot reach the server'),
        h('div', { class: 'card-error', role: 'alert' }, errText(e)),
        button('Retry', () => location.reload(), { class: 'btn primary' })));
      return;
    }
    renderHeader();
    window.addEventListener('hashchange', route);
    route();
  }

  function boot() {
    if (document.body.dataset.page === 'login') initLogin();
    else initApp();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
