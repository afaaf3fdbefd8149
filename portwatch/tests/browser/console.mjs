// The console in a real browser (Debian's chromium, driven by playwright-core),
// run by portwatch/tests/console_browser.rs inside the test's network namespace.
//
// An operator signs in, watches the open-ports page while a new port opens (this
// script opens it: a listener in the namespace), sees the port appear without a
// reload, files it for approval; an approver signs in and approves it; the port
// leaves the alerting list; the dashboard's numbers equal the API's. A screenshot
// of every page goes to PW_SHOTS. Prints one JSON line per step; exits non-zero
// with the reason on the first failure.
//
// Environment: PW_URL (the console), PW_OPERATOR, PW_APPROVER, PW_ADMIN (tokens),
// PW_NEW_PORT (ip:port to open), PW_SHOTS (directory), PW_TOOLS (where
// node_modules/playwright-core is), PW_CHROMIUM (the browser).

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import net from 'node:net';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const require = createRequire(`${env('PW_TOOLS')}/node_modules/`);
const { chromium } = require('playwright-core');

const URL = env('PW_URL');
const SHOTS = env('PW_SHOTS');
const [NEW_IP, NEW_PORT] = env('PW_NEW_PORT').split(':');
const step = (name, extra) => console.log(JSON.stringify({ step: name, ...extra }));
mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.PW_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
let listener;
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // Chrome logs every non-2xx fetch; a 401 is expected (signed out, or checking
  // whether a session exists). Anything else is a problem.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(`console: ${m.text()} at ${JSON.stringify(m.location())}`);
  });
  const shot = async (name) => {
    await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
    step('screenshot', { name });
  };
  const loaded = async () => page.waitForSelector('#data[data-loaded]', { timeout: 15000 });

  const signIn = async (token, who) => {
    await page.goto(`${URL}/#/login`);
    await page.waitForSelector('form[data-test=login]');
    await page.fill('form[data-test=login] input[name=token]', token);
    await page.click('form[data-test=login] button[type=submit]');
    await page.waitForFunction(() => location.hash.startsWith('#/dashboard'));
    await loaded();
    const shown = await page.textContent('#who');
    if (!shown.includes(who)) throw new Error(`signed in as ${shown}, expected ${who}`);
    step('signed in', { who });
  };
  const signOut = async () => {
    await page.click('[data-test=logout]');
    await page.waitForSelector('form[data-test=login]');
    // The cookie is gone with the session: the API refuses the page's reads.
    const status = await page.evaluate(async () => (await fetch('/api/v1/ports')).status);
    if (status !== 401) throw new Error(`after signing out the API answered ${status}`);
    step('signed out');
  };

  // --- sign in: the page without a session shows the login ------------------------
  await page.goto(URL);
  await page.waitForSelector('form[data-test=login]');
  await shot('login');
  await signIn(env('PW_OPERATOR'), 'olga');
  const cookie = (await context.cookies()).find((c) => c.name === 'portwatch_session');
  if (!cookie || !cookie.httpOnly || cookie.sameSite !== 'Strict') {
    throw new Error(`session cookie flags: ${JSON.stringify(cookie)}`);
  }
  const hasToken = await page.evaluate(() => document.cookie.includes('portwatch_session'));
  if (hasToken) throw new Error('a script can read the session cookie');

  // --- a new port appears on the open-ports page without a reload ------------------
  await page.goto(`${URL}/#/ports`);
  await loaded();
  const row = `tr[data-port="${NEW_IP}:${NEW_PORT}"]`;
  if (await page.$(row)) throw new Error(`${NEW_IP}:${NEW_PORT} is listed before it opened`);
  await page.evaluate(() => { window.__sameDocument = true; });
  await shot('ports-before');
  listener = net.createServer((s) => s.destroy());
  await new Promise((resolve, reject) => listener.listen(Number(NEW_PORT), NEW_IP, resolve).on('error', reject));
  const opened = Date.now();
  step('port opened', { at: NEW_IP, port: Number(NEW_PORT) });
  await page.waitForSelector(row, { timeout: 60000 });
  if (!(await page.evaluate(() => window.__sameDocument === true))) throw new Error('the page reloaded');
  step('port appeared without reload', { seconds: (Date.now() - opened) / 1000 });
  await shot('ports-new');

  // --- file it for approval ----------------------------------------------------------
  await page.click(`${row} [data-test=file]`);
  await page.waitForSelector('form[data-test=approval-form]');
  await page.fill('form[data-test=approval-form] input[name=reason]', 'reporting replica for the finance team');
  await page.fill('form[data-test=approval-form] input[name=owner]', 'finance');
  await shot('file-for-approval');
  await page.click('form[data-test=approval-form] button[type=submit]');
  const notice = await page.waitForSelector('[data-test=notice]', { timeout: 15000 });
  const filed = (await notice.textContent()).match(/approval (ap_[0-9a-f]+)/);
  if (!filed) throw new Error(`no approval id in: ${await notice.textContent()}`);
  step('filed', { approval: filed[1] });
  // Still alerting: it is pending.
  await page.goto(`${URL}/#/ports?alerting=1`);
  await loaded();
  await page.waitForSelector(row, { timeout: 15000 });
  await signOut();

  // --- an approver approves it ---------------------------------------------------------
  await signIn(env('PW_APPROVER'), 'arno');
  await page.goto(`${URL}/#/approvals`);
  await loaded();
  const approvalRow = `tr[data-approval="${filed[1]}"]`;
  await page.waitForSelector(`${approvalRow} [data-test=approve]`);
  await shot('approvals-pending');
  await page.click(`${approvalRow} [data-test=approve]`);
  await page.waitForFunction((sel) => {
    const cell = document.querySelector(`${sel} [data-field=state]`);
    return cell && cell.textContent === 'approved';
  }, approvalRow, { timeout: 15000 });
  step('approved', { approval: filed[1] });
  await shot('approvals');

  // --- it leaves the alerting list ------------------------------------------------------
  await page.goto(`${URL}/#/ports?alerting=1`);
  await loaded();
  await page.waitForFunction((sel) => !document.querySelector(sel), row, { timeout: 15000 });
  await shot('ports-alerting');
  await page.goto(`${URL}/#/ports`);
  await loaded();
  const approval = await page.textContent(`${row} [data-field=approval]`);
  if (!approval.includes(filed[1])) throw new Error(`the port shows approval "${approval}"`);
  step('left the alerting list', { shows: approval });

  // --- the dashboard's numbers are the API's ----------------------------------------------
  await page.goto(`${URL}/#/dashboard`);
  await loaded();
  let compared = null;
  for (let attempt = 0; attempt < 10 && !compared; attempt += 1) {
    const api = await page.evaluate(async () => {
      const month = await (await fetch('/api/v1/report?by=risk&days=30')).json();
      const day = await (await fetch('/api/v1/report?by=risk&days=1')).json();
      return { month, day };
    });
    const shown = await page.evaluate(() => Object.fromEntries([...document.querySelectorAll('[data-test=by-risk] tr[data-risk]')]
      .map((tr) => [tr.dataset.risk, Object.fromEntries([...tr.querySelectorAll('[data-field]')]
        .map((td) => [td.dataset.field, td.dataset.secs !== undefined ? td.dataset.secs : td.textContent]))])));
    const want = {};
    for (const o of api.month.open_now) {
      const g = api.month.groups.find((x) => x.key === o.risk) || {};
      const d = api.day.groups.find((x) => x.key === o.risk) || {};
      want[o.risk] = {
        open: String(o.open), unremediated: String(o.unremediated), new: String(d.episodes || 0),
        mttd: g.mttd_mean_secs === undefined || g.mttd_mean_secs === null ? '' : String(g.mttd_mean_secs),
        mttr: g.mttr_mean_secs === undefined || g.mttr_mean_secs === null ? '' : String(g.mttr_mean_secs),
      };
    }
    const total = api.month.open_now.reduce((n, o) => n + o.unremediated, 0);
    const shownTotal = await page.textContent('[data-test=open-total]');
    const canon = (o) => JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
    const same = Object.keys(want).length === Object.keys(shown).length
      && Object.keys(want).every((r) => shown[r] && canon(shown[r]) === canon(want[r]));
    if (!same && attempt === 9) step('dashboard differs', { shown, want });
    if (same && shownTotal === String(total)) {
      compared = { risks: Object.keys(want).length, open_total: total, by_risk: want };
    } else {
      await page.waitForTimeout(1000);
    }
  }
  if (!compared) throw new Error('the dashboard never showed the API\'s numbers');
  step('dashboard equals API', compared);
  await shot('dashboard');

  // --- every page, for the record ----------------------------------------------------------
  for (const name of ['panels', 'hosts', 'tasks', 'alerts', 'blocks']) {
    await page.goto(`${URL}/#/${name}`);
    await loaded();
    if (name === 'tasks') {
      // The task health shows the running task in each zone the API names, with
      // its runs, and every task, run or not.
      const health = await page.evaluate(async () => {
        const rows = [...document.querySelectorAll('[data-test=task-health] tbody tr')]
          .map((tr) => ({ task: tr.dataset.task, zone: tr.dataset.zone, runs: tr.querySelector('[data-field=runs]').textContent }));
        const api = await (await fetch('/api/v1/tasks')).json();
        return { rows, api };
      });
      const running = health.api.find((t) => t.task === 'high_risk_ports');
      const shown = health.rows.filter((r) => r.task === 'high_risk_ports');
      const tasksShown = new Set(health.rows.map((r) => r.task));
      if (!running || !running.zones.length || shown.length !== running.zones.length
        || shown.some((r, i) => r.zone !== running.zones[i].zone || !(Number(r.runs) > 0))
        || tasksShown.size !== health.api.length) {
        throw new Error(`the task health differs from the API's: ${JSON.stringify({ shown, running, tasks: [...tasksShown] })}`);
      }
      step('task health shown', { zones: shown.map((r) => r.zone), runs: shown.map((r) => Number(r.runs)) });
      // The plan: a row per zone and running task, as the API plans them, with
      // whether each meets its cadence, and the warnings (or that there are none).
      const plan = await page.evaluate(async () => {
        const rows = [...document.querySelectorAll('[data-test=plan] tbody tr')]
          .map((tr) => ({ task: tr.dataset.task, zone: tr.dataset.zone, meets: tr.querySelector('[data-field=meets]').textContent }));
        const warnings = document.querySelector('[data-test=plan-warnings]').textContent;
        const api = await (await fetch('/api/v1/plan')).json();
        return { rows, warnings, api };
      });
      const planned = plan.api.zones.flatMap((z) => z.tasks.map((t) => ({ task: t.task, zone: z.zone, meets: t.meets_cadence ? 'yes' : 'no' })));
      if (!planned.length || JSON.stringify(plan.rows) !== JSON.stringify(planned)
        || plan.api.warnings.some((w) => !plan.warnings.includes(w))) {
        throw new Error(`the plan differs from the API's: ${JSON.stringify({ shown: plan.rows, planned, warnings: plan.warnings })}`);
      }
      step('plan shown', { rows: plan.rows.length, warnings: plan.api.warnings.length });
    }
    await shot(name);
  }
  // The history of the new port: its observations as recorded, the same as the API's,
  // newest first, and at least one that saw it open.
  await page.goto(`${URL}/#/history?ip=${NEW_IP}&port=${NEW_PORT}`);
  await loaded();
  const history = await page.evaluate(async ([ip, port]) => {
    const shown = [...document.querySelectorAll('[data-test=events] tbody tr')]
      .map((tr) => ({ id: tr.dataset.id, seen: tr.children[2].textContent }));
    const r = await fetch(`/api/v1/events?ip=${ip}&port=${port}&limit=50`);
    return { shown, api: await r.json() };
  }, [NEW_IP, NEW_PORT]);
  const apiIds = history.api.map((e) => e.id);
  // The page may have loaded a moment before the API call, when a newer scan came in.
  const offset = apiIds.indexOf(history.shown[0] && history.shown[0].id);
  if (!history.shown.length || offset < 0 || offset > 5
    || history.shown.some((e, i) => i + offset < apiIds.length && e.id !== apiIds[i + offset])) {
    throw new Error(`the history's observations differ from the API's: ${JSON.stringify({ shown: history.shown.slice(0, 5), api: apiIds.slice(0, 5) })}`);
  }
  if (!history.shown.some((e) => e.seen === 'open')) throw new Error('no observation on the history page saw the port open');
  if (history.api.some((e) => e.event.ip !== NEW_IP)) throw new Error('an observation of another host in the history');
  step('history shows the observations', { shown: history.shown.length, open: history.shown.filter((e) => e.seen === 'open').length,
    first: history.api[0] && history.api[0].summary });
  await shot('history');
  await signOut();
  await signIn(env('PW_ADMIN'), 'ada');
  await page.goto(`${URL}/#/users`);
  await loaded();
  await shot('users');
  if (problems.length) throw new Error(problems.join('\n'));
  step('done');
} catch (e) {
  console.log(JSON.stringify({ step: 'failed', error: String(e && e.stack || e) }));
  process.exitCode = 1;
} finally {
  if (listener) listener.close();
  await browser.close();
}
