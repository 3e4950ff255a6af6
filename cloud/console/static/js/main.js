// The console's entry point: reads the API description and the caller's identity, offers only
// the pages the caller's role may use, and routes between them (#/inbox, #/devices, ...).

import { api, ApiError, forgetKey, storedKey, storeKey } from './api.js';
import { renderAudit } from './audit.js';
import { renderDevice } from './device.js';
import { explain, fill, formatAge, h, notice, unavailable } from './dom.js';
import { ENDPOINTS } from './endpoints.js';
import { allPages, renderFleet } from './fleet.js';
import { renderInbox } from './inbox.js';
import { can, normDevice } from './model.js';
import { renderTrack } from './trackview.js';

const PAGES = [
  { path: 'inbox', label: 'Alerts', needs: 'inbox' },
  { path: 'devices', label: 'Devices', needs: 'devices' },
  { path: 'fleet', label: 'Fleet health', needs: 'fleet' },
  { path: 'audit', label: 'Audit log', needs: 'audit' },
];

const ctx = {
  api, role: null, roleKnown: false, user: null, config: {}, leaving: [],
  onLeave(f) { this.leaving.push(f); },
  logout() { forgetKey(); location.hash = '#/login'; route(); },
};

async function boot() {
  try {
    const response = await fetch('config.json');
    if (response.ok) ctx.config = await response.json();
  } catch { /* defaults: no tiles */ }
  try {
    await api.loadSpec();
  } catch (error) {
    fill(document.getElementById('view'), unavailable('API', error));
    return;
  }
  window.addEventListener('hashchange', route);
  await route();
}

async function whoAmI() {
  if (!storedKey()) return false;
  if (!api.has('get', ENDPOINTS.me)) {
    notice(`The API does not say who you are (${explain(api.missing('get', ENDPOINTS.me))}); every page is offered and the server decides.`);
    ctx.role = 'admin'; ctx.user = 'unknown user'; ctx.roleKnown = false;
    return true;
  }
  try {
    const me = await api.get(ENDPOINTS.me);
    ctx.role = me.role; ctx.roleKnown = true; ctx.user = me.user_name ?? me.user ?? me.name ?? me.key_id;
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) { forgetKey(); notice('That key was refused.', 'error'); }
    else notice(explain(error), 'error');
    return false;
  }
}

function drawNav(current) {
  const nav = document.getElementById('nav');
  fill(nav, PAGES.filter((p) => can(ctx.role, p.needs))
    .map((p) => h('a', { href: `#/${p.path}`, class: current === p.path ? 'active' : '', dataset: { page: p.path } }, p.label)));
  fill(document.getElementById('who'), ctx.user ? `${ctx.user} (${ctx.roleKnown ? ctx.role : 'role unknown'})` : '',
    ctx.user ? h('button', { class: 'secondary', id: 'logout', onclick: () => ctx.logout() }, 'Sign out') : null);
}

function login(view) {
  drawNav('');
  const key = h('input', { type: 'password', name: 'api_key', placeholder: 'lw_…', autocomplete: 'off' });
  const submit = async (e) => {
    e.preventDefault();
    storeKey(key.value.trim());
    notice('');
    if (await whoAmI()) { location.hash = `#/${firstPage()}`; await route(); }
  };
  fill(view, h('form', { class: 'panel login', onsubmit: submit }, h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Paste your lienwatch API key. It stays in this browser tab only.'),
    key, h('button', { type: 'submit', id: 'sign-in' }, 'Sign in')));
  key.focus();
}

function firstPage() { return (PAGES.find((p) => can(ctx.role, p.needs)) || PAGES[0]).path; }

async function route() {
  for (const f of ctx.leaving.splice(0)) f();
  const view = document.getElementById('view');
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  const [page, ...rest] = path.split('/');
  const params = new URLSearchParams(query || '');
  if (page === 'login' || !storedKey()) { login(view); return; }
  if (!ctx.role && !(await whoAmI())) { login(view); return; }
  drawNav(page);
  const arg = rest.map(decodeURIComponent).join('/');
  const allowed = (what) => {
    if (can(ctx.role, what)) return true;
    fill(view, unavailable('Not offered', { message: `the ${ctx.role} role does not use this page` }));
    return false;
  };
  if (page === 'inbox' && allowed('inbox')) renderInbox(view, ctx);
  else if (page === 'devices' && allowed('devices')) await renderDevices(view);
  else if (page === 'device' && allowed('devices')) await renderDevice(view, ctx, arg);
  else if (page === 'track' && allowed('track')) await renderTrack(view, ctx, arg, params);
  else if (page === 'fleet' && allowed('fleet')) await renderFleet(view, ctx);
  else if (page === 'audit' && allowed('audit')) await renderAudit(view, ctx);
  else if (!['inbox', 'devices', 'device', 'track', 'fleet', 'audit'].includes(page)) { location.hash = `#/${firstPage()}`; }
}

async function renderDevices(view) {
  fill(view, h('h1', {}, 'Devices'), h('p', { class: 'muted' }, 'Loading…'));
  try {
    const devices = (await allPages(api, ENDPOINTS.devices)).map(normDevice);
    fill(view, h('h1', {}, `Devices (${devices.length})`), h('section', { class: 'panel' }, h('table', { id: 'devices' },
      h('thead', {}, h('tr', {}, ['device', 'VIN', 'online', 'last heard', 'power', 'open events', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, devices.map((d) => h('tr', { dataset: { device: d.id } },
        h('td', {}, h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)), h('td', {}, d.vin),
        h('td', {}, d.online ? h('span', { class: 'fresh' }, 'online') : h('span', { class: 'stale' }, 'offline')),
        h('td', {}, formatAge(d.lastSeenAt ?? d.lastMessageAt)), h('td', {}, d.powerState ?? '—'),
        h('td', {}, d.openEvents ? [String(d.openEvents), ' ', d.openMaxSeverity ? h('span', { class: `sev ${d.openMaxSeverity}` }, d.openMaxSeverity) : null] : '0'),
        h('td', {}, can(ctx.role, 'track') ? h('a', { href: `#/track/${encodeURIComponent(d.id)}` }, 'track') : '')))))));
  } catch (error) {
    fill(view, h('h1', {}, 'Devices'), unavailable('Devices', error));
  }
}

boot();
