// The portwatch console: one page that reads and drives the one API
// (/api/v1/docs). No framework and no build step: it is served as written.
// Every value from the API reaches the page as text (createElement/textContent,
// never innerHTML). The session cookie is HttpOnly; changes carry the session's
// CSRF token. The current view refreshes itself every few seconds.
'use strict';

const REFRESH_MS = 3000;
const PAGE_ROWS = 50;
const RISKS = ['high_risk_admin_panel', 'high_risk_service', 'high_risk_port', 'risk_port'];
const ROLES = ['viewer', 'operator', 'approver', 'admin'];

const state = { me: null, csrf: null, timer: null, view: 0 };

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// --- small helpers -------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

function svg(tag, attrs, ...kids) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const kid of kids.flat()) if (kid) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

const when = (t) => (t ? new Date(t).toISOString().replace('T', ' ').slice(0, 19) : '');
const secs = (s) => {
  if (s === null || s === undefined || Number.isNaN(s)) return '–';
  s = Math.round(s);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
};
const riskCell = (r) => h('span', { class: `risk-${r}` }, r);
const can = (role) => state.me && ROLES.indexOf(state.me.role) >= ROLES.indexOf(role);

function flash(message, error) {
  const box = document.getElementById('flash');
  const item = h('div', { class: error ? 'error' : '', 'data-test': error ? 'error' : 'notice' }, message);
  box.replaceChildren(item);
  setTimeout(() => item.remove(), 8000);
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  if (method !== 'GET' && state.csrf) opts.headers['X-CSRF-Token'] = state.csrf;
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (r.status === 401 && path !== '/api/v1/session') {
    state.me = null;
    if (location.hash !== '#/login') location.hash = '#/login';
  }
  if (!r.ok) throw new ApiError(r.status, (data && data.error) || r.statusText);
  return { data, next: r.headers.get('x-next-cursor') };
}
const get = async (path) => (await api('GET', path)).data;

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

function table(headers, rows, attrs) {
  return h('table', attrs || {},
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows));
}

function form(fields, submit, label, attrs) {
  const el = h('form', Object.assign({ class: 'panel' }, attrs || {}),
    fields.map(([name, text, value, extra]) => h('label', {}, text,
      extra && extra.options
        ? h('select', { name }, extra.options.map((o) => h('option', { value: o, selected: o === value }, o)))
        : h('input', Object.assign({ name, value: value || '' }, extra || {})))),
    h('div', {}, h('button', { type: 'submit', class: 'primary' }, label)));
  el.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(el).entries());
    try { await submit(values); } catch (e) { flash(e.message, true); }
  });
  return el;
}

async function act(label, fn) {
  try { await fn(); flash(label); await refresh(); } catch (e) { flash(e.message, true); }
}

// --- pages ----------------------------------------------------------------------
// Each page: a title, `tools(q)` (forms that stay while the data refreshes), and
// `load(q)` giving the data part, redrawn every REFRESH_MS.

const pages = {};

pages.login = {
  title: 'Sign in',
  public: true,
  tools: () => h('div', { class: 'login' },
    h('h1', {}, 'Sign in to portwatch'),
    h('p', { class: 'muted' }, 'With your API token (portwatch token create, or from an admin).'),
    form([['token', 'API token', '', { type: 'password', autocomplete: 'off', required: true }]], async (v) => {
      const { data } = await api('POST', '/api/v1/session', { token: v.token });
      state.me = data; state.csrf = data.csrf;
      location.hash = '#/dashboard';
    }, 'Sign in', { 'data-test': 'login' })),
  load: async () => null,
};

pages.dashboard = {
  title: 'Dashboard',
  load: async () => {
    const [month, day, nodes, tasks, plan] = await Promise.all([
      get('/api/v1/report?by=risk&days=30'), get('/api/v1/report?by=risk&days=1'),
      get('/api/v1/nodes'), get('/api/v1/tasks'), get('/api/v1/plan'),
    ]);
    const g30 = Object.fromEntries(month.groups.map((g) => [g.key, g]));
    const g1 = Object.fromEntries(day.groups.map((g) => [g.key, g]));
    const newDay = day.groups.reduce((n, g) => n + g.episodes, 0);
    const openNow = month.open_now.reduce((n, o) => n + o.unremediated, 0);
    const max = Math.max(1, ...month.convergence.map((d) => d.open_unremediated));
    const w = 16;
    return [
      h('div', { class: 'cards' },
        h('div', { class: 'card' }, h('div', { class: 'label' }, 'open, not approved or blocked'),
          h('div', { class: 'value', 'data-test': 'open-total' }, openNow)),
        h('div', { class: 'card' }, h('div', { class: 'label' }, 'new in 24 h'),
          h('div', { class: 'value', 'data-test': 'new-24h' }, newDay))),
      h('h2', {}, 'Exposures by risk class'),
      table(['class', 'open', 'needing action', 'new in 24 h', 'MTTD (30 d)', 'notify (30 d)', 'MTTR (30 d)'],
        month.open_now.slice().sort((a, b) => RISKS.indexOf(a.risk) - RISKS.indexOf(b.risk)).map((o) => {
          const m = g30[o.risk] || {};
          return h('tr', { 'data-risk': o.risk },
            h('td', {}, riskCell(o.risk)),
            h('td', { class: 'num', 'data-field': 'open' }, o.open),
            h('td', { class: 'num', 'data-field': 'unremediated' }, o.unremediated),
            h('td', { class: 'num', 'data-field': 'new' }, (g1[o.risk] || {}).episodes || 0),
            h('td', { class: 'num', 'data-field': 'mttd', 'data-secs': m.mttd_mean_secs ?? '' }, secs(m.mttd_mean_secs)),
            h('td', { class: 'num' }, secs(m.notify_mean_secs)),
            h('td', { class: 'num', 'data-field': 'mttr', 'data-secs': m.mttr_mean_secs ?? '' }, secs(m.mttr_mean_secs)));
        }), { 'data-test': 'by-risk' }),
      h('h2', {}, 'Convergence: open and not remediated at the end of each day'),
      svg('svg', { class: 'trend', width: month.convergence.length * w + 40, height: 130, 'data-test': 'trend' },
        month.convergence.map((d, i) => {
          const bar = Math.round((d.open_unremediated / max) * 100);
          return svg('g', {},
            svg('rect', { x: 30 + i * w, y: 105 - bar, width: w - 3, height: bar },
              svg('title', {}, `${d.day}: ${d.open_unremediated}`)),
            i % 5 === 0 ? svg('text', { x: 30 + i * w, y: 122 }, d.day.slice(5)) : null);
        }),
        svg('text', { x: 0, y: 12 }, String(max))),
      h('h2', {}, 'Task health (last 24 h)'),
      planWarnings(plan),
      taskHealthTable(tasks),
      h('h2', {}, 'Probe nodes'),
      nodesTable(nodes),
    ];
  },
};

// Each task per zone: its newest job, how long the newest finished one took and
// how much of its targets it covered, its runs and failures in the period, its
// last failure.
function taskHealthTable(tasks) {
  const rows = [];
  for (const t of tasks) {
    const zones = t.zones.length ? t.zones : [null];
    zones.forEach((z, i) => {
      const j = z && z.last;
      const done = z && z.last_finished;
      const f = z && z.last_failure;
      rows.push(h('tr', { 'data-task': t.task, 'data-zone': z ? z.zone : '' },
        h('td', {}, i === 0 ? t.task : ''), h('td', {}, i === 0 ? t.cadence || 'off' : ''), h('td', {}, z ? z.zone : ''),
        h('td', {}, j ? when(j.started_at) : 'never ran',
          j ? h('span', { class: j.state === 'failed' ? 'bad' : j.state === 'done' ? 'ok' : 'muted' }, ` ${j.state}`) : null),
        h('td', {}, done ? when(done.updated_at) : ''),
        h('td', { class: 'num' }, z && z.duration_secs !== null ? secs(z.duration_secs) : ''),
        h('td', { class: 'num', 'data-field': 'coverage' }, z && z.coverage !== null ? `${Math.round(z.coverage * 100)} %` : ''),
        h('td', { class: 'num', 'data-field': 'runs' }, z ? z.runs : ''),
        h('td', { class: z && z.failed ? 'num bad' : 'num', 'data-field': 'failed' }, z ? z.failed : ''),
        h('td', { class: z && z.overruns ? 'num bad' : 'num', 'data-field': 'overruns' }, z ? z.overruns : ''),
        h('td', {}, f ? `${when(f.updated_at)}: ${f.error || 'failed'}` : '')));
    });
  }
  return table(['task', 'runs every', 'zone', 'newest pass', 'last finished', 'took', 'coverage', 'passes', 'failed', 'overruns', 'last failure'],
    rows, { 'data-test': 'task-health' });
}

// Whether the cadences can be met: per zone, each task's pass (expected and
// measured), its share of the probe time, and the warnings with what would fix them.
function planWarnings(plan) {
  return plan.warnings.length
    ? h('ul', { class: 'warnings', 'data-test': 'plan-warnings' }, plan.warnings.map((w) => h('li', { class: 'bad' }, w)))
    : h('p', { class: 'ok', 'data-test': 'plan-warnings' }, 'Every cadence can be met.');
}

function planTable(plan) {
  const share = (s) => (s >= 10 ? `${Math.round(s)}×` : `${(s * 100).toFixed(1)} %`);
  const rows = [];
  for (const z of plan.zones) {
    z.tasks.forEach((t, i) => rows.push(h('tr', { 'data-task': t.task, 'data-zone': z.zone },
      h('td', {}, i === 0 ? `${z.zone} (${z.nodes} node${z.nodes === 1 ? '' : 's'}, ${share(z.budget_share)} busy)` : ''),
      h('td', {}, t.task), h('td', {}, secs(t.cadence_secs)),
      h('td', { class: 'num' }, t.targets), h('td', { class: 'num' }, t.ports_per_target),
      h('td', { class: 'num', 'data-field': 'expected' }, secs(t.expected_pass_secs)),
      h('td', { class: 'num', 'data-field': 'measured' }, t.measured_pass_secs === null ? '' : secs(t.measured_pass_secs)),
      h('td', { class: 'num' }, share(t.budget_share)),
      h('td', { class: t.meets_cadence ? 'ok' : 'bad', 'data-field': 'meets' }, t.meets_cadence ? 'yes' : 'no'))));
  }
  return table(['zone', 'task', 'cadence', 'targets', 'ports', 'pass (expected)', 'pass (measured)', 'share', 'meets cadence'],
    rows, { 'data-test': 'plan' });
}

function nodesTable(nodes) {
  return table(['node', 'zone', 'health', 'last heartbeat', 'running job', 'spooled', 'spool refused'],
    nodes.map((n) => h('tr', {}, h('td', {}, n.node), h('td', {}, n.zone),
      h('td', { class: n.health === 'ok' ? 'ok' : 'bad' }, n.health),
      h('td', {}, `${n.last_heartbeat_age_secs} s ago`), h('td', {}, n.running_job || ''),
      h('td', { class: 'num' }, n.spooled), h('td', { class: 'num' }, n.spool_overflow))));
}

function approvalForm(p) {
  return form([
    ['target', 'address or network', p.ip, { required: true }],
    ['ports', 'ports', String(p.port), { required: true }],
    ['service', 'expected service', p.service || ''],
    ['owner', 'owner', p.owner || '', { required: true }],
    ['reason', 'business reason', '', { required: true }],
    ['expires', 'expires (e.g. 90d)', '90d', { required: true }],
  ], async (v) => {
    const body = { target: v.target, ports: v.ports, proto: p.proto, reason: v.reason, owner: v.owner, expires: v.expires };
    if (v.service) body.service = v.service;
    const { data } = await api('POST', '/api/v1/approvals', body);
    flash(`Filed approval ${data.approval_id} for ${v.target}:${v.ports} (pending an approver)`);
    state.dialog = null; render();
  }, 'File for approval', { 'data-test': 'approval-form' });
}

function blockForm(p) {
  return form([
    ['reason', 'why block it', '', { required: true }],
    ['duration', 'for (e.g. 4h)', '4h', { required: true }],
  ], async (v) => {
    const { data } = await api('POST', '/api/v1/blocks', { ip: p.ip, port: p.port, proto: p.proto, reason: v.reason, duration: v.duration });
    flash(`Proposed block ${data.block_id} of ${p.ip}:${p.port}; a second person confirms it`);
    state.dialog = null; render();
  }, 'Propose block', { 'data-test': 'block-form' });
}

pages.ports = {
  title: 'Open ports',
  tools: (q) => {
    const f = h('form', { class: 'toolbar', 'data-test': 'filters' },
      h('label', {}, 'address', h('input', { name: 'ip', value: q.ip || '', placeholder: '10.1.0.7' })),
      h('label', {}, 'risk', h('select', { name: 'risk' }, h('option', { value: '' }, 'any'),
        RISKS.map((r) => h('option', { value: r, selected: q.risk === r }, r)))),
      h('label', {}, 'owner', h('input', { name: 'owner', value: q.owner || '' })),
      h('label', {}, 'state', h('select', { name: 'state' },
        ['open', 'closed', 'all'].map((s) => h('option', { value: s, selected: (q.state || 'open') === s }, s)))),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'alerting', checked: q.alerting === '1', value: '1' }), 'alerting only (not approved)'),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'group', checked: q.group === '1', value: '1' }), 'group by address'),
      h('label', {}, 'search this page', h('input', { name: 'search', value: q.search || '', placeholder: 'redis, tomcat…' })),
      h('button', { type: 'submit' }, 'Show'));
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = Object.fromEntries(new FormData(f).entries());
      location.hash = `#/ports${query(v)}`;
    });
    const dialog = state.dialog;
    return [f, dialog ? h('div', {}, h('h2', {}, dialog.title), dialog.node,
      h('button', { onclick: () => { state.dialog = null; render(); } }, 'Cancel')) : null];
  },
  load: async (q) => {
    const params = { state: q.state || 'open', ip: q.ip, risk: q.risk, owner: q.owner, limit: PAGE_ROWS, cursor: q.cursor };
    if (q.alerting === '1') params.approved = 'false';
    const { data, next } = await api('GET', `/api/v1/ports${query(params)}`);
    const needle = (q.search || '').toLowerCase();
    let rows = data.filter((p) => !needle || [p.ip, p.port, p.service, p.product, p.owner, p.system, p.title]
      .some((x) => x !== null && x !== undefined && String(x).toLowerCase().includes(needle)));
    if (q.group === '1') rows = rows.slice().sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
    const out = [];
    let lastIp = null;
    for (const p of rows) {
      if (q.group === '1' && p.ip !== lastIp) {
        const n = rows.filter((r) => r.ip === p.ip).length;
        out.push(h('tr', { class: 'group' }, h('td', { colspan: 10 }, `${p.ip} — ${n} port${n > 1 ? 's' : ''}`, p.owner ? ` — ${p.owner}` : '')));
        lastIp = p.ip;
      }
      const svc = [p.service, p.product, p.version].filter(Boolean).join(' ');
      out.push(h('tr', { 'data-port': `${p.ip}:${p.port}` },
        h('td', {}, p.ip), h('td', {}, `${p.port}/${p.proto}`), h('td', {}, p.state),
        h('td', {}, svc || h('span', { class: 'muted' }, 'not identified'), p.panels && p.panels.length ? h('div', {}, `panels: ${p.panels.join(', ')}`) : null,
          p.title ? h('div', { class: 'muted' }, p.title) : null),
        h('td', {}, riskCell(p.risk)), h('td', {}, p.evidence),
        h('td', {}, p.owner || '', p.system ? h('div', { class: 'muted' }, p.system) : null),
        h('td', { 'data-field': 'approval' }, p.approval ? h('span', { class: 'ok' }, `approved (${p.approval})`) : ''),
        h('td', {}, when(p.first_seen), h('div', { class: 'muted' }, when(p.last_seen))),
        h('td', {},
          h('a', { href: `#/history${query({ ip: p.ip, port: p.port })}` }, 'history'), ' ',
          can('operator') && !p.approval && p.state === 'open' ? h('button', {
            'data-test': 'file', onclick: () => { state.dialog = { title: `File ${p.ip}:${p.port} for approval`, node: approvalForm(p) }; render(); },
          }, 'File for approval') : null, ' ',
          can('operator') && p.state === 'open' ? h('button', {
            onclick: () => { state.dialog = { title: `Block ${p.ip}:${p.port}`, node: blockForm(p) }; render(); },
          }, 'Block…') : null)));
    }
    return [
      table(['address', 'port', 'state', 'service', 'risk', 'evidence', 'asset', 'approval', 'first / last seen', ''], out, { 'data-test': 'ports' }),
      h('div', { class: 'pager' },
        q.cursor ? h('a', { href: `#/ports${query(Object.assign({}, q, { cursor: '' }))}` }, 'first page') : null,
        next ? h('a', { href: `#/ports${query(Object.assign({}, q, { cursor: next }))}`, 'data-test': 'next' }, 'next page') : null,
        h('span', { class: 'muted' }, `${rows.length} shown`)),
    ];
  },
};

pages.panels = {
  title: 'Admin panels',
  load: async () => {
    const rows = await get('/api/v1/ports?risk=high_risk_admin_panel&limit=1000');
    return table(['address', 'port', 'panels', 'title', 'service', 'asset', 'approval', 'last seen'],
      rows.map((p) => h('tr', {}, h('td', {}, p.ip), h('td', {}, p.port), h('td', {}, (p.panels || []).join(', ')),
        h('td', {}, p.title || ''), h('td', {}, [p.service, p.product, p.version].filter(Boolean).join(' ')),
        h('td', {}, p.owner || ''), h('td', {}, p.approval || ''), h('td', {}, when(p.last_seen)))));
  },
};

pages.hosts = {
  title: 'Hosts',
  load: async () => {
    const rows = await get(`/api/v1/hosts?limit=1000`);
    return table(['address', 'alive', 'last alive', 'last checked', 'open ports', 'scans', 'wildcard', 'asset'],
      rows.map((x) => h('tr', {}, h('td', {}, x.ip),
        h('td', { class: x.alive ? 'ok' : x.alive === false ? 'bad' : 'muted' }, x.alive === null ? 'unknown' : x.alive ? 'alive' : 'dead'),
        h('td', {}, when(x.last_alive)), h('td', {}, when(x.last_checked)), h('td', { class: 'num' }, x.open_ports),
        h('td', { class: 'num' }, x.scans), h('td', {}, x.wildcard ? 'yes' : ''), h('td', {}, x.owner || ''))));
  },
};

pages.history = {
  title: 'Exposure history',
  load: async (q) => {
    const port = Number(q.port);
    const [episodes, alerts, events] = await Promise.all([
      get(`/api/v1/episodes${query({ ip: q.ip, limit: 1000 })}`), get(`/api/v1/alerts${query({ ip: q.ip, limit: 1000 })}`),
      api('GET', `/api/v1/events${query({ ip: q.ip, port: q.port, limit: 50, cursor: q.cursor })}`),
    ]);
    const seen = (e) => e.port_open === true ? h('span', { class: 'bad' }, 'open')
      : e.port_open === false ? h('span', { class: 'ok' }, 'not open') : h('span', { class: 'muted' }, '');
    return [
      h('h1', {}, `${q.ip}:${q.port}`),
      h('h2', {}, 'Episodes (each period it was open)'),
      table(['opened', 'closed', 'duration', 'detection bound', 'observations', 'alerts'],
        episodes.filter((e) => e.port === port).map((e) => h('tr', {}, h('td', {}, when(e.opened_at)),
          h('td', {}, e.closed_at ? when(e.closed_at) : h('span', { class: 'bad' }, 'open')), h('td', {}, secs(e.duration_secs)),
          h('td', {}, secs(e.mttd_bound_secs)), h('td', { class: 'num' }, e.observations), h('td', {}, (e.alerts || []).join(', '))))),
      h('h2', {}, 'Alerts and who was told'),
      alertsTable(alerts.filter((a) => a.port === port)),
      h('h2', {}, 'Observations (as the probes recorded them, newest first)'),
      table(['when', 'kind', 'port', 'what was seen', 'task', 'node'],
        events.data.map((e) => h('tr', { 'data-id': e.id }, h('td', {}, when(e.ts)), h('td', {}, e.kind),
          h('td', {}, seen(e)), h('td', {}, e.summary), h('td', {}, e.task), h('td', {}, e.node))),
        { 'data-test': 'events' }),
      events.next ? h('a', { href: `#/history${query(Object.assign({}, q, { cursor: events.next }))}` }, 'older observations') : null,
    ];
  },
};

function alertsTable(alerts) {
  return table(['when', 'alert', 'address', 'severity', 'risk', 'owner', 'notifications and deliveries'],
    alerts.map((a) => h('tr', {}, h('td', {}, when(a.at)), h('td', {}, a.kind, a.baseline ? h('div', { class: 'muted' }, 'baseline') : null),
      h('td', {}, `${a.ip}:${a.port}`), h('td', { class: `sev-${a.severity}` }, a.severity), h('td', {}, riskCell(a.risk)),
      h('td', {}, a.owner || ''),
      h('td', {}, (a.notifications || []).map((n) => h('div', {}, `${n.kind} ${when(n.at)}: `,
        n.deliveries.map((d) => h('span', { class: d.outcome === 'delivered' ? 'ok' : 'bad' },
          `${d.channel} ${d.outcome} (${d.attempts}×${d.last_status ? `, ${d.last_status}` : ''}) `))))))),
    { 'data-test': 'alerts' });
}

pages.alerts = {
  title: 'Alerts',
  load: async (q) => {
    const { data, next } = await api('GET', `/api/v1/alerts${query({ limit: 200, cursor: q.cursor, risk: q.risk })}`);
    return [alertsTable(data), next ? h('a', { href: `#/alerts${query(Object.assign({}, q, { cursor: next }))}` }, 'next page') : null];
  },
};

pages.tasks = {
  title: 'Tasks and jobs',
  tools: () => can('admin') ? h('details', {}, h('summary', {}, 'Change a cadence'),
    form([
      ['task', 'task', 'full_ports', { options: ['liveness', 'full_ports', 'high_risk_ports', 'service_detection', 'port_recheck', 'admin_panels', 'offline_high_risk_ports', 'offline_full_ports', 'all_assets_full_ports'] }],
      ['every', 'every (10m, 6h, off; empty: as configured)', ''],
    ], async (v) => {
      await api('PUT', `/api/v1/schedule/${v.task}`, { every: v.every ? v.every : null });
      flash(`${v.task}: ${v.every || 'as configured'}`);
      await refresh();
    }, 'Save', { 'data-test': 'cadence-form' })) : null,
  load: async () => {
    const [schedule, tasks, jobs, nodes, plan] = await Promise.all([get('/api/v1/schedule'), get('/api/v1/tasks'),
      get('/api/v1/jobs?limit=100'), get('/api/v1/nodes'), get('/api/v1/plan')]);
    return [
      h('h2', {}, 'Task health (last 24 h)'),
      taskHealthTable(tasks),
      h('h2', {}, 'Plan: can the cadences be met?'),
      planWarnings(plan),
      planTable(plan),
      h('h2', {}, 'Configuration of the tasks'),
      table(['task', 'runs every', 'configured', 'changed by', 'in this build'], schedule.map((t) => h('tr', { 'data-task': t.task }, h('td', {}, t.task),
        h('td', { 'data-field': 'cadence' }, t.cadence || 'off'), h('td', {}, t.configured || 'off'),
        h('td', {}, t.set_by ? `${t.set_by}, ${when(t.set_at)}` : ''), h('td', {}, t.implemented ? 'yes' : 'not yet')))),
      h('p', { class: 'muted' }, 'Cadences come from the [schedule] section of the config file; an admin may change them here (recorded in the journal).'),
      h('h2', {}, 'Passes and their chunks (newest first)'),
      table(['job', 'task', 'chunk', 'state', 'zone', 'node', 'targets', 'hosts done', 'open found', 'started', 'duration', 'error'],
        jobs.map((j) => h('tr', {}, h('td', {}, h('code', {}, j.id.slice(0, 13))), h('td', {}, j.task),
          h('td', {}, j.pass ? `${j.chunk + 1} of ${j.chunks}${j.try_no > 1 ? `, try ${j.try_no}` : ''}`
            : j.chunks ? `pass: ${j.chunks_ended} of ${j.chunks} ended${j.overruns ? `, ${j.overruns} overrun` : ''}` : ''),
          h('td', { class: j.state === 'failed' ? 'bad' : j.state === 'done' ? 'ok' : '' }, j.state), h('td', {}, j.zone),
          h('td', {}, j.node || ''), h('td', { class: 'num' }, j.targets), h('td', { class: 'num' }, j.hosts_done ?? ''),
          h('td', { class: 'num' }, j.open_found ?? ''), h('td', {}, when(j.started_at)),
          h('td', {}, j.started_at && j.updated_at ? secs((new Date(j.updated_at) - new Date(j.started_at)) / 1000) : ''),
          h('td', {}, j.error || '')))),
      h('h2', {}, 'Probe nodes'),
      nodesTable(nodes),
    ];
  },
};

pages.approvals = {
  title: 'Approvals',
  tools: () => can('operator') ? h('details', {}, h('summary', {}, 'Request an approval'),
    approvalForm({ ip: '', port: '', proto: 'tcp' })) : null,
  load: async () => {
    const rows = await get('/api/v1/approvals');
    const soon = Date.now() + 7 * 86400e3;
    return table(['id', 'state', 'scope', 'service', 'reason', 'owner', 'requested', 'decided', 'expires', ''],
      rows.map((a) => h('tr', { 'data-approval': a.approval_id },
        h('td', {}, h('code', {}, a.approval_id)), h('td', { 'data-field': 'state', class: a.state === 'approved' ? 'ok' : '' }, a.state),
        h('td', {}, `${a.net} ${a.proto}/${a.ports}`), h('td', {}, a.service || ''), h('td', {}, a.reason), h('td', {}, a.owner),
        h('td', {}, a.requested_by, h('div', { class: 'muted' }, when(a.requested_at))),
        h('td', {}, a.decision ? `${a.decision.granted ? 'granted' : 'rejected'} by ${a.decision.by}` : ''),
        h('td', { class: a.state === 'approved' && new Date(a.expires_at) < soon ? 'bad' : '' }, when(a.expires_at),
          a.state === 'approved' && new Date(a.expires_at) < soon ? h('div', {}, 'expiring soon') : null),
        h('td', {}, a.state === 'pending' && can('approver') ? [
          h('button', { class: 'primary', 'data-test': 'approve', onclick: () => act(`Approved ${a.approval_id}`, () => api('POST', `/api/v1/approvals/${a.approval_id}/approve`, {})) }, 'Approve'), ' ',
          h('button', { class: 'danger', onclick: () => act(`Rejected ${a.approval_id}`, () => api('POST', `/api/v1/approvals/${a.approval_id}/reject`, {})) }, 'Reject'),
        ] : null))), { 'data-test': 'approvals' });
  },
};

pages.blocks = {
  title: 'Blocks',
  load: async () => {
    const rows = await get('/api/v1/blocks');
    return table(['id', 'state', 'target', 'reason', 'proposed', 'confirmed', 'applied', 'verified', 'ends', ''],
      rows.map((b) => h('tr', {}, h('td', {}, h('code', {}, b.block_id)), h('td', {}, b.state), h('td', {}, `${b.ip}:${b.port}/${b.proto}`),
        h('td', {}, b.reason), h('td', {}, b.proposed_by, h('div', { class: 'muted' }, when(b.proposed_at))),
        h('td', {}, b.confirmed_by || ''), h('td', {}, b.applied ? `${when(b.applied.applied_at)}${b.applied.dry_run ? ' (dry run)' : ''}` : b.error || ''),
        h('td', {}, when(b.verified_at)), h('td', {}, b.applied ? when(b.applied.expires_at) : secs(b.duration_secs)),
        h('td', {},
          b.state === 'proposed' && can('approver') ? h('button', { class: 'primary', onclick: () => act(`Confirmed ${b.block_id}`, () => api('POST', `/api/v1/blocks/${b.block_id}/confirm`)) }, 'Confirm') : null, ' ',
          !b.ending && can('operator') ? h('button', { class: 'danger', onclick: () => act(`Rolling back ${b.block_id}`, () => api('POST', `/api/v1/blocks/${b.block_id}/rollback`)) }, 'Roll back') : null))));
  },
};

pages.users = {
  title: 'Users and tokens',
  role: 'admin',
  tools: () => form([
    ['user', 'user', '', { required: true }],
    ['role', 'role', 'viewer', { options: ROLES }],
  ], async (v) => {
    const { data } = await api('POST', '/api/v1/tokens', { user: v.user, role: v.role });
    flash(`Token for ${data.user} (${data.role}), shown once: ${data.token}`);
    await refresh();
  }, 'Issue token'),
  load: async () => {
    const rows = await get('/api/v1/tokens');
    return table(['token id', 'user', 'role', 'issued', 'by', 'revoked', ''],
      rows.map((t) => h('tr', {}, h('td', {}, h('code', {}, t.id)), h('td', {}, t.user), h('td', {}, t.role || ''),
        h('td', {}, when(t.issued_at)), h('td', {}, t.issued_by), h('td', {}, when(t.revoked_at)),
        h('td', {}, t.revoked_at ? null : h('button', { class: 'danger', onclick: () => act(`Revoked ${t.id}`, () => api('DELETE', `/api/v1/tokens/${t.id}`)) }, 'Revoke')))));
  },
};

pages.audit = {
  title: 'Audit',
  role: 'admin',
  tools: (q) => {
    const f = h('form', { class: 'toolbar', 'data-test': 'audit-filters' },
      h('label', {}, 'user', h('input', { name: 'user', value: q.user || '' })),
      h('label', {}, 'kind', h('input', { name: 'kind', value: q.kind || '', placeholder: 'refused, approval_granted…' })),
      h('label', {}, 'since', h('input', { name: 'since', value: q.since || '', placeholder: '24h or 2026-12-01T00:00:00Z' })),
      h('button', { type: 'submit' }, 'Show'));
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      location.hash = `#/audit${query(Object.fromEntries(new FormData(f).entries()))}`;
    });
    return f;
  },
  load: async (q) => {
    const rows = await get(`/api/v1/audit${query({ user: q.user, kind: q.kind, since: q.since, limit: 200 })}`);
    return table(['at', 'kind', 'user', 'token', 'issued by', 'from', 'subject', 'rule'],
      rows.map((e) => h('tr', { class: e.kind === 'refused' ? 'bad' : '' }, h('td', {}, when(e.at)), h('td', {}, e.kind), h('td', {}, e.user),
        h('td', {}, e.token ? h('code', {}, e.token) : ''), h('td', {}, e.issuer || ''), h('td', {}, e.client || ''),
        h('td', {}, h('code', {}, e.subject)), h('td', {}, e.rule || ''))), { 'data-test': 'audit' });
  },
};

const NAV = [
  ['dashboard', 'Dashboard'], ['ports', 'Open ports'], ['panels', 'Admin panels'], ['hosts', 'Hosts'],
  ['tasks', 'Tasks'], ['approvals', 'Approvals'], ['alerts', 'Alerts'], ['blocks', 'Blocks'], ['users', 'Users'], ['audit', 'Audit'],
];

// --- routing and refresh ------------------------------------------------------------

function route() {
  const [path, qs] = (location.hash.replace(/^#\/?/, '') || 'dashboard').split('?');
  return { name: pages[path] ? path : 'dashboard', q: Object.fromEntries(new URLSearchParams(qs || '')) };
}

function chrome(name) {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!state.me) { nav.replaceChildren(); who.replaceChildren(); return; }
  nav.replaceChildren(...NAV.filter(([p]) => !pages[p].role || can(pages[p].role))
    .map(([p, label]) => h('a', { href: `#/${p}`, class: p === name ? 'active' : '' }, label)));
  who.replaceChildren(`${state.me.user} (${state.me.role})`, h('button', {
    'data-test': 'logout',
    onclick: async () => { try { await api('DELETE', '/api/v1/session'); } catch (_) { /* signed out anyway */ }
      state.me = null; state.csrf = null; location.hash = '#/login'; },
  }, 'Sign out'));
}

async function refresh() {
  const { name, q } = route();
  const page = pages[name];
  const region = document.getElementById('data');
  if (!region || !state.me) return;
  const view = state.view;
  try {
    const nodes = await page.load(q);
    if (view !== state.view) return; // the page changed meanwhile
    region.replaceChildren(...[nodes].flat().filter(Boolean));
    region.setAttribute('data-loaded', String(Date.now()));
  } catch (e) {
    if (view === state.view) region.replaceChildren(h('p', { class: 'bad' }, `Could not load: ${e.message}`));
  }
}

async function render() {
  state.view += 1;
  clearInterval(state.timer);
  let { name, q } = route();
  if (!state.me && name !== 'login') {
    try { const { data } = await api('GET', '/api/v1/session'); state.me = data; state.csrf = data.csrf; } catch (_) { /* not signed in */ }
    if (!state.me) { location.hash = '#/login'; name = 'login'; }
  }
  if (name === 'login') { state.me = null; }
  const page = pages[name];
  document.title = `${page.title} · portwatch`;
  chrome(name);
  const app = document.getElementById('app');
  app.replaceChildren(...[
    name === 'login' ? null : h('h1', {}, page.title),
    page.tools ? page.tools(q) : null,
    h('div', { id: 'data', 'data-page': name }),
  ].flat().filter(Boolean));
  if (name !== 'login') {
    await refresh();
    state.timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  }
}

window.addEventListener('hashchange', () => { state.dialog = null; render(); });
window.addEventListener('DOMContentLoaded', render);
