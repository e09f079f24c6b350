// Instrument detail: registry entry, catalogue review, current state, state timeline and power
// for a range, and for staff the range's session log. The current state follows the live
// status stream as the board's tile does (its power, which sends no events, once a minute);
// the charts and the log show the range asked for.

import { deleteResource, getAll, getJson, postJson } from '../api.js';
import { chartBox, powerChart, teardown, timelineChart } from '../charts.js';
import { dateTimeInput, readDateTimeInput } from '../clock.js';
import { el, markPresets, named } from '../dom.js';
import { fmtNumber, fmtTime, inLanguage, t, zoneNote } from '../i18n.js';
import { POWER_REFRESH_MS, every, followStatus, liveMark, userNamed, whoIsAt } from '../live.js';
import { attempt, confirmed, showProblem } from '../notice.js';
import { exportButtons, moreNote, section, table } from '../table.js';

const HOUR = 3600e3;
const PRESETS = [['detail.last24h', 24 * HOUR], ['detail.last7d', 7 * 24 * HOUR],
  ['detail.last30d', 30 * 24 * HOUR]];
const STEPS = [60, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
const SESSIONS_SHOWN = 100;

const yes = (v) => (v ? t('field.yes') : t('field.no'));
/** Whom a session's time counts for, marked as the board marks a user taken from a booking. */
const sessionUser = (name, s) => (s.user_id ? userNamed(name, s.user_id, s.user_from === 'booking') : null);
// when and how long first: a phone's card of a session starts with them (app.css)
const SESSION_COLUMNS = [
  { key: 'start', label: 'common.start', format: (v) => fmtTime(v) },
  { key: 'end', label: 'common.end', format: (v) => (v ? fmtTime(v) : t('state.running')) },
  { key: 'running_s', label: 'sessions.hours', format: (v) => fmtNumber(v / 3600, 2) },
  { key: 'user_name', label: 'board.user', format: sessionUser },
  { key: 'booking_kind', label: 'sessions.booking_kind', format: (v) => (v ? t(`book.kind.${v}`) : null) },
  { key: 'outside', label: 'sessions.outside', format: yes, short: true },
  { key: 'uncertified', label: 'sessions.uncertified', format: yes, short: true },
  // marked, so that the row of a session the figures leave out is muted (app.css)
  { key: 'counted', label: 'sessions.counted', short: true,
    format: (v) => el('span', { dataset: { counted: String(v) }, text: yes(v) }) },
];

/** A bucket width giving at most ~400 power points over the span. */
export function powerStep(spanMs) {
  const wanted = spanMs / 1000 / 400;
  return STEPS.find((s) => s >= wanted) ?? STEPS[STEPS.length - 1];
}

/** Registry fields the API gives registered users no value for (docs/api.md, "Catalogue
 * review"): their rows would read as unknown. */
const STAFF_ONLY = new Set(['field.value', 'field.accepted', 'field.networked', 'field.gateway']);

export function render(root, ctx) {
  const id = ctx.args[0];
  const stop = new AbortController();
  const live = liveMark();
  const head = el('div', { class: 'page-head' },
    el('a', { class: 'back', href: '#/board', text: `← ${t('detail.back')}` }), live.node);
  const detailPath = `instruments/${encodeURIComponent(id)}/detail`;
  const statusLine = el('div', { class: 'status-line' });
  const gatewayLine = el('p', { class: 'gateway-line muted' });
  let status = null; // the board item shown: the detail's, then the stream's latest
  const info = el('div', { class: 'detail-info' }, el('p', { class: 'muted', text: t('common.loading') }));
  const start = el('input', { type: 'datetime-local', id: 'range-start', 'aria-label': t('common.start') });
  const end = el('input', { type: 'datetime-local', id: 'range-end', 'aria-label': t('common.end') });
  const timeline = chartBox('timeline', t('detail.timeline'));
  const power = chartBox('power', t('detail.power'));
  const charts = el('div', { class: 'charts', dataset: { loaded: 'false' } },
    el('section', { class: 'card' }, el('h2', { text: t('detail.timeline') }), timeline.box),
    el('section', { class: 'card' }, el('h2', { text: t('detail.power') }), power.box));
  const presets = PRESETS.map(([key, span]) => el('button', { type: 'button',
    id: key.replace('.', '-'), dataset: { span }, text: t(key),
    onclick: () => { setRange(Date.now() - span, Date.now()); load(); } }));
  const form = el('form', { class: 'filters range' },
    el('span', { text: `${t('detail.range')}:` }), presets,
    el('label', {}, `${t('common.start')} `, start), el('label', {}, `${t('common.end')} `, end),
    zoneNote(),
    el('button', { type: 'submit', class: 'primary', text: t('common.apply') }));
  form.addEventListener('submit', (event) => { event.preventDefault(); load(); });
  markPresets(presets, [start, end], presets[0]); // the last 24 h are shown first
  const message = el('div', { class: 'message' });
  // the log names who used it: the API tells a registered user of their own sessions only
  const mine = ctx.me.role === 'user';
  const sessions = el('div'); // the log's card, drawn per range
  root.append(head, info, form, message, charts, sessions);

  function setRange(lo, hi) { // the inputs hold Shanghai's clock (clock.js), no offset
    start.value = dateTimeInput(lo);
    end.value = dateTimeInput(hi);
  }

  /** Whether registered users see it and whether a change awaits review; admins review it
   * here: list the entry as it stands, or take it out of the catalogue. */
  function catalogue(i) {
    const state = i.listed_at ? `${t('catalogue.listed')} ${fmtTime(i.listed_at)}` : t('catalogue.unlisted');
    const line = el('p', { class: 'catalogue-line muted',
      dataset: { listed: String(Boolean(i.listed_at)), pending: String(i.review_pending) } },
    i.review_pending && i.listed_at ? `${state} · ${t('catalogue.pending')}` : state);
    if (ctx.me.role !== 'admin') return line;
    const path = `instruments/${encodeURIComponent(i.id)}/listing`;
    /** ``question``: an i18n key the person must confirm first. */
    const act = (change, question) => () => (question && !confirmed(question) ? undefined
      : attempt(async () => {
        await change();
        await loadInfo();
      }, message, ctx, stop.signal));
    if (i.review_pending) {
      line.append(' ', el('button', { type: 'button', class: 'primary', dataset: { action: 'list' },
        text: t('catalogue.approve'), onclick: act(() => postJson(path, undefined, { signal: stop.signal })) }));
    }
    if (i.listed_at) {
      line.append(' ', el('button', { type: 'button', dataset: { action: 'unlist' }, text: t('catalogue.unlist'),
        onclick: act(() => deleteResource(path, { signal: stop.signal }), 'catalogue.confirm_unlist') }));
    }
    return line;
  }

  function showStatus(s) {
    status = s;
    statusLine.replaceChildren(
      el('span', { class: 'badge', dataset: { state: s.state }, text: t(`state.${s.state}`) }),
      s.since ? ` ${t('board.since')} ${fmtTime(s.since)}` : '',
      s.power_w !== null ? ` · ${fmtNumber(s.power_w, 0)} W` : '',
      s.user_id ? ` · ${whoIsAt(s)}` : '');
  }

  function showGateway(g) {
    gatewayLine.hidden = !g;
    if (!g) return;
    gatewayLine.dataset.online = String(g.online);
    gatewayLine.textContent = `${t('field.gateway')} ${g.id}: `
      + `${t(g.online ? 'detail.gateway_online' : 'detail.gateway_offline')}`
      + ` ${t('board.since')} ${fmtTime(g.since)}`
      + (g.software ? ` · ${g.software}` : '')
      + (g.announces_instrument ? '' : ` · ${t('detail.gateway_unannounced')}`)
      + (g.dropped ? ` · ${t('detail.gateway_dropped')}: ${g.dropped}` : '');
  }

  /** A change the stream brought; one of the gateway's connection also changed the gateway
   * line, read anew. */
  function follow(item) {
    const connectionChanged = item.online !== status.online;
    showStatus(item);
    if (connectionChanged) refreshCurrent().catch(() => {}); // the minute's round tries again
  }

  /** The gateway line and the power, neither of which sends events: the power only while the
   * state is the one shown (a state the stream brought meanwhile is newer than this read). */
  async function refreshCurrent() {
    const { status: s, gateway: g } = await getJson(detailPath, {}, { signal: stop.signal });
    showGateway(g);
    if (s.state === status.state) showStatus({ ...status, power_w: s.power_w });
  }

  async function loadInfo() {
    const { instrument: i, status: s, gateway: g } = await getJson(detailPath, {}, { signal: stop.signal });
    const rows = [
      ['field.id', i.id], ['field.institution', named(i.institution_name, i.institution_id)],
      ['field.model', i.model],
      ['field.maker', i.maker],
      ['field.category', i.category_name
        ? `${i.category_code} ${inLanguage(i.category_name, i.category_name_en)}` : i.category_code],
      ['field.value', i.value_rmb === null ? null : fmtNumber(Number(i.value_rmb), 2)],
      ['field.location', i.location], ['field.open', yes(i.open_to_outside)],
      ['field.fee', i.fee_schedule], ['field.accepted', i.accepted_on],
      ['field.networked', i.networked_on], ['field.gateway', i.gateway_id],
    ].filter(([key]) => !mine || !STAFF_ONLY.has(key)); // users get the catalogue's fields
    showStatus(s);
    showGateway(g);
    // drawn anew after a reconnect too: the registry entry stays open if it was
    const open = info.querySelector('details.registry')?.open;
    info.replaceChildren(
      el('h1', { dataset: { instrument: i.id }, text: i.name }), statusLine, gatewayLine,
      ctx.me.role === 'user' ? '' : catalogue(i),
      el('details', { class: 'card registry', open },
        el('summary', { text: t('detail.registry') }),
        el('dl', {}, rows.map(([key, value]) => [el('dt', { text: t(key) }),
          el('dd', { text: value === null || value === undefined || value === '' ? '—' : value })]))));
  }

  /** The session log's card: the first ``page`` of the sessions of ``range``, exports
   * holding every one. */
  function showSessions(path, range, page) {
    const card = section(mine ? 'sessions.mine' : 'sessions.title', 'sessions',
      el('p', { class: 'muted', dataset: { note: 'sessions' },
        text: t(mine ? 'sessions.mine_note' : 'sessions.note') }));
    card.querySelector('.card-head').append(exportButtons(path, range, ctx.fail, 'sessions'));
    card.append(table(SESSION_COLUMNS, page.items, 'sessions'), ...moreNote(page));
    sessions.replaceChildren(card);
  }

  async function load() {
    const from = readDateTimeInput(start.value);
    const hi = readDateTimeInput(end.value);
    const wrong = Number.isNaN(from) || Number.isNaN(hi) ? 'common.missing_range'
      : !(hi > from) ? 'common.bad_range'
        : from > Date.now() ? 'common.future_range' : null; // no data can be there yet
    if (wrong) {
      showProblem(message, wrong, 'range');
      return;
    }
    const step = powerStep(hi - from);
    // Hour-wide steps start on the hour, where the server reads hourly sums (docs/api.md).
    const lo = step % 3600 ? from : Math.floor(from / HOUR) * HOUR;
    charts.dataset.loaded = 'false';
    const range = { start: new Date(lo).toISOString(), end: new Date(hi).toISOString() };
    const base = `instruments/${encodeURIComponent(id)}`;
    try {
      const [intervals, points, log] = await Promise.all([
        // every interval: a page of them ends days before a busy instrument's range does
        getAll(`${base}/timeline`, range, { signal: stop.signal }),
        getJson(`${base}/power`, { ...range, step_s: step, limit: 10000 },
          { signal: stop.signal }),
        getJson(`${base}/sessions`, { ...range, limit: SESSIONS_SHOWN }, { signal: stop.signal }),
      ]);
      const empty = !intervals.length && !points.items.length;
      charts.hidden = empty; // a note says so rather than empty grids
      showSessions(`${base}/sessions`, range, log);
      sessions.hidden = empty && !log.total; // nor an empty table under that note
      if (!empty) {
        const watts = powerChart(power.canvas, points.items, lo, hi);
        timelineChart(timeline.canvas, intervals, lo, hi, watts); // a time at one x in both
      }
      charts.dataset.loaded = 'true';
      message.replaceChildren(...(empty
        ? [el('p', { class: 'muted', dataset: { empty: 'range' }, text: t('detail.no_data') })] : []));
    } catch (err) {
      if (stop.signal.aborted) return;
      charts.hidden = sessions.hidden = true; // not the last range's, under the inputs of this one
      ctx.fail(err, message);
    }
  }

  setRange(Date.now() - 24 * HOUR, Date.now());
  ctx.keep(start, end, ...presets);
  // this instrument's changes only, not every one of the role's board; the stream refuses an
  // instrument the role may not see as its detail does; the charts are drawn once, after the
  // first load
  followStatus({ instrument_id: id }, {
    signal: stop.signal, mark: live,
    onSnapshot: async () => {
      const first = !status;
      await loadInfo();
      if (first) load();
    },
    onItem: follow,
    onRefused: (err) => ctx.fail(err, root),
    onFailed: (err) => ctx.fail(err, info),
  });
  every(POWER_REFRESH_MS, stop.signal, async () => { if (status) await refreshCurrent(); });
  return teardown(root, stop);
}
