// Shell of the dashboard: header (navigation, language switch, role), hash routes, and the
// handling every page shares: 401 -> back to login, 403 -> a clear message; what a page keeps
// across a language switch.

import { ApiError, getJson, session } from './api.js';
import { clear, el } from './dom.js';
import { LANGS, lang, loadStrings, setLang, t } from './i18n.js';
import { explained } from './notice.js';
import * as board from './pages/board.js';
import * as bookings from './pages/bookings.js';
import * as catalogue from './pages/catalogue.js';
import * as detail from './pages/detail.js';
import * as evaluation from './pages/evaluation.js';
import * as login from './pages/login.js';
import * as utilisation from './pages/utilisation.js';

const READERS = ['admin', 'lab_manager', 'evaluator'];
const PAGES = [
  { route: 'board', page: board, nav: 'nav.board', roles: null },
  { route: 'utilisation', page: utilisation, nav: 'nav.utilisation', roles: READERS },
  { route: 'evaluation', page: evaluation, nav: 'nav.evaluation', roles: READERS },
  { route: 'bookings', page: bookings, nav: 'nav.bookings', roles: null },
  { route: 'catalogue', page: catalogue, nav: 'nav.catalogue', roles: READERS },
  { route: 'instrument', page: detail, nav: null, roles: null },
];

const top = document.getElementById('top');
const main = document.getElementById('main');
let me = null; // the /whoami answer for the current token
let cleanup = null;
let notice = null; // message shown on the login page (e.g. "session ended")
let kept = new Map(); // id -> control: what the page shown keeps across a language switch

function parseRoute() {
  const [name = '', ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  return { name, args: rest.map(decodeURIComponent) };
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function logout(message = null) {
  session.clear();
  me = null;
  notice = message;
  go('#/login');
}

/** What pages call on any failed request; ``box`` receives the message. */
function fail(err, box) {
  if (err instanceof ApiError && err.status === 401) {
    logout('login.expired');
    return;
  }
  const forbidden = err instanceof ApiError && err.status === 403;
  // a page the role may not open says so; an API refusal names what was refused below
  const text = forbidden ? t(err.message ? 'error.forbidden_item' : 'error.forbidden')
    : err instanceof ApiError && err.status === 404 ? t('error.not_found')
      : err instanceof ApiError && err.status === 0 ? t('error.network')
        : `${t('error.generic')} (${err.status ?? '?'})`;
  box.replaceChildren(el('div', {
    class: forbidden ? 'notice notice-forbidden' : 'notice notice-error',
    role: 'alert', title: err.message || null,
    dataset: { error: forbidden ? 'forbidden' : 'error' },
  }, el('strong', { text }), explained(err)));
}

function renderHeader(current) {
  clear(top);
  const brand = el('a', { class: 'brand', href: '#/board' },
    el('span', { class: 'brand-long', text: t('app.title') }),
    el('span', { class: 'brand-short', text: t('app.short') }));
  const nav = el('nav', { class: 'nav', 'aria-label': t('nav.main') });
  if (me) {
    for (const p of PAGES) {
      if (!p.nav || (p.roles && !p.roles.includes(me.role))) continue;
      nav.append(el('a', {
        href: `#/${p.route}`, 'data-i18n': p.nav, text: t(p.nav),
        class: current === p.route ? 'active' : null,
        'aria-current': current === p.route ? 'page' : null,
      }));
    }
  }
  const langs = el('div', { class: 'lang', role: 'group', 'aria-label': t('nav.lang') },
    LANGS.map((code) => el('button', {
      type: 'button', dataset: { lang: code }, 'aria-pressed': String(code === lang()),
      text: code === 'zh' ? '中文' : 'EN',
      onclick: () => {
        const values = new Map([...kept].filter(([, c]) => c.isConnected)
          .map(([id, c]) => [id, valueOf(c)]));
        setLang(code);
        route(values);
      },
    })));
  const who = me ? el('div', { class: 'who' },
    el('span', { class: 'role', dataset: { role: me.role }, text: t(`role.${me.role}`) }),
    // a long name is cut short on a narrow header: whole, with its id, on hover
    me.institution_id ? el('span', { class: 'scope',
      title: me.institution_name ? `${me.institution_name} (${me.institution_id})` : me.institution_id,
      text: me.institution_name || me.institution_id }) : null,
    el('button', { type: 'button', class: 'logout', text: t('nav.logout'),
      onclick: () => logout() })) : null;
  top.append(brand, nav, el('div', { class: 'tools' }, langs, who));
}

/** What a control holds: a file input its files, a preset button whether it is pressed
 * (dom.js markPresets), any other its value. */
const valueOf = (c) => (c instanceof HTMLButtonElement ? c.getAttribute('aria-pressed')
  : c.type === 'file' ? c.files : c.value);

function restore(c, value) {
  if (c instanceof HTMLButtonElement) c.setAttribute('aria-pressed', value);
  else if (c.type === 'file') c.files = value;
  else c.value = value;
}

/** ``ctx.keep(...controls)`` for a page drawn with ``values`` (id -> what its controls held
 * in the other language): each control, known by its id, gets its value back and is read at
 * the next switch. A page keeps the controls of a form drawn once its data came, too; a list
 * whose options are still loading is set once they come, unless chosen from meanwhile. */
const keeper = (values) => (...controls) => {
  for (const c of controls) {
    kept.set(c.id, c);
    if (!values?.has(c.id)) continue;
    const value = values.get(c.id);
    values.delete(c.id); // once: the same form drawn again later (another year's) is fresh
    const has = () => [...c.options].some((o) => o.value === value);
    if (!(c instanceof HTMLSelectElement) || has()) {
      restore(c, value);
      continue;
    }
    const waiting = new MutationObserver(() => {
      if (!has()) return;
      c.value = value;
      waiting.disconnect();
    });
    waiting.observe(c, { childList: true });
    c.addEventListener('change', () => waiting.disconnect(), { once: true });
  }
};

/** Draw the page of the address; ``values``: what its controls held in the other language. */
async function route(values = null) {
  cleanup?.();
  cleanup = null;
  kept = new Map();
  const keep = keeper(values);
  document.title = t('app.title');
  const { name, args } = parseRoute();
  if (!session.token || name === 'login') {
    me = null;
    if (session.token && name === 'login') session.clear();
    renderHeader('login');
    document.body.dataset.page = 'login';
    clear(main);
    cleanup = login.render(main, { notice, onToken: signIn, keep }) ?? null;
    return;
  }
  if (!me) {
    try {
      me = await getJson('whoami');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { logout('login.expired'); return; }
      renderHeader(null);
      fail(err, main);
      return;
    }
  }
  const entry = PAGES.find((p) => p.route === name);
  if (!entry) { go('#/board'); return; }
  renderHeader(name);
  document.body.dataset.page = name;
  clear(main);
  const box = el('section', { class: 'page', dataset: { page: name } });
  main.append(box);
  if (entry.roles && !entry.roles.includes(me.role)) {
    fail(new ApiError(403, 'forbidden', ''), box);
    return;
  }
  cleanup = entry.page.render(box, {
    me, args, fail: (err, where = box) => fail(err, where), go, keep,
  }) ?? null;
}

/** Check a pasted token with /whoami before keeping it. */
async function signIn(token) {
  const who = await getJson('whoami', {}, { token });
  session.save(token);
  me = who;
  notice = null;
  go('#/board');
}

window.addEventListener('hashchange', () => route());
await loadStrings();
route();
