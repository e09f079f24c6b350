// Utilisation and openness: effective and external machine hours and the openness ratio by
// institution, by instrument category and by instrument, for a period, and the period's
// service records, with exports.
// Lab managers get their own institution only (the API enforces it).

import { getJson } from '../api.js';
import { chartBox, hoursChart, teardown } from '../charts.js';
import { dateInput, wallClock } from '../clock.js';
import { el, markPresets } from '../dom.js';
import { fmtNumber, fmtPercent, fmtTime, inLanguage, t, zoneNote } from '../i18n.js';
import { UNIT_COLUMN } from '../institutions.js';
import { showProblem } from '../notice.js';
import { exportButtons, moreNote, section, table } from '../table.js';

const DAY = 86400e3;

const COLUMNS = [
  { key: 'key', label: 'util.group', short: true },
  { key: 'name', label: 'util.name', format: (v, row) => inLanguage(v, row.name_en) },
  // the figures first, so that a phone shows them before the table scrolls sideways
  { key: 'effective_hours', label: 'util.effective', format: (v) => fmtNumber(v) },
  { key: 'external_hours', label: 'util.external', format: (v) => fmtNumber(v) },
  { key: 'openness_ratio', label: 'util.openness', format: (v) => fmtPercent(v) },
  { key: 'instruments', label: 'util.instruments', short: true },
  { key: 'sessions', label: 'util.sessions' },
  { key: 'availability', label: 'util.availability', format: (v) => fmtPercent(v) },
  { key: 'outside_users', label: 'util.outside_users' },
];
const code = (v) => t(`code.${v}`);
const SERVICE_COLUMNS = [
  { key: 'booking_id', label: 'svc.booking' },
  { key: 'instrument_name', label: 'svc.instrument' }, UNIT_COLUMN,
  { key: 'user_name', label: 'svc.user',
    format: (v, row) => (row.organisation ? `${v || row.user_id} (${row.organisation})` : v || row.user_id) },
  { key: 'user_type', label: 'svc.user_type', format: code },
  { key: 'service_way', label: 'svc.way', format: code },
  { key: 'start', label: 'common.start', format: (v) => fmtTime(v) },
  { key: 'service_hours', label: 'svc.hours', format: (v) => fmtNumber(v, 2) },
  { key: 'fee_rmb', label: 'svc.fee', format: (v) => fmtNumber(Number(v), 2) },
  { key: 'rating', label: 'svc.rating', short: true },
];
const SERVICES_SHOWN = 25;
const GROUPS = [
  ['institution', 'util.by_institution', true],
  ['category', 'util.by_category', true, { category_digits: 4 }],
  ['instrument', 'util.by_instrument', false],
];

export function render(root, ctx) {
  const stop = new AbortController();
  const now = Date.now(); // periods are days in Shanghai (metrics.md), as clock.js counts them
  // the days the API counts (docs/api.md): the browser refuses others before a request
  const days = { min: '1900-01-01', max: '2199-12-31' };
  const start = el('input', { type: 'date', id: 'period-start', value: dateInput(now - 29 * DAY),
    'aria-label': t('common.start'), ...days });
  const end = el('input', { type: 'date', id: 'period-end', value: dateInput(now),
    'aria-label': t('common.end'), ...days });
  const preset = (key, lo) => el('button', { type: 'button', id: key.replace('.', '-'),
    text: t(key), onclick: () => { start.value = lo; end.value = dateInput(); load(); } });
  const form = el('form', { class: 'filters' },
    el('span', { text: `${t('util.period')}:` }),
    preset('util.last30d', dateInput(now - 29 * DAY)),
    preset('util.this_year', `${wallClock(now).year}-01-01`),
    el('label', {}, `${t('common.start')} `, start), el('label', {}, `${t('common.end')} `, end),
    zoneNote(),
    el('button', { type: 'submit', class: 'primary', text: t('common.apply') }));
  form.addEventListener('submit', (event) => { event.preventDefault(); load(); });
  const presets = [...form.querySelectorAll('button[type="button"]')];
  markPresets(presets, [start, end], presets[0]); // the last 30 days are shown first
  ctx.keep(start, end, ...presets);
  const message = el('div', { class: 'message' });
  const body = el('div', { class: 'report', dataset: { loaded: 'false' } });
  root.append(el('div', { class: 'page-head' },
    el('h1', { 'data-i18n': 'util.title', text: t('util.title') })), form, message, body);

  async function load() {
    const wrong = !start.value || !end.value || end.value < start.value // ISO dates sort as text
      ? 'util.bad_period' : start.value > dateInput() ? 'util.future_period' : null;
    if (wrong) {
      showProblem(message, wrong, 'period'); // the report shown stays
      return;
    }
    message.replaceChildren();
    body.dataset.loaded = 'false';
    const period = { start: start.value, end: end.value };
    try {
      const [services, ...reports] = await Promise.all([
        getJson('reports/service-records', { ...period, limit: SERVICES_SHOWN }, { signal: stop.signal }),
        ...GROUPS.map(([group, , , extra]) => getJson(
          'reports/utilisation', { ...period, group_by: group, ...extra }, { signal: stop.signal })),
      ]);
      if (!reports[0].items.length) { // no empty grids, nor a note about data never sent
        body.replaceChildren(el('p', { class: 'muted', dataset: { empty: 'scope' },
          text: t('util.no_instruments') }));
        body.dataset.loaded = 'true';
        return;
      }
      const charts = [];
      body.replaceChildren(...GROUPS.map(([group, title, withChart, extra], n) => {
        const params = { ...period, group_by: group, ...extra };
        const card = section(title, group);
        card.querySelector('.card-head').append(exportButtons('reports/utilisation', params, ctx.fail, group));
        if (withChart) {
          const chart = chartBox(group, t(title));
          card.append(chart.box);
          charts.push(() => hoursChart(chart.canvas, reports[n].items));
        }
        card.append(table(COLUMNS, reports[n].items, group), ...moreNote(reports[n]));
        return card;
      }), servicesCard(services, period, ctx.fail));
      // zeros and an availability of 0% would read as instruments standing idle and down; the
      // institutions' rows sum every instrument (the instruments' list is one page of them)
      const silent = reports[0].items.every((r) => !r.effective_hours && !r.availability);
      if (silent) body.prepend(el('p', { class: 'muted', dataset: { empty: 'period' }, text: t('util.no_data') }));
      for (const draw of charts) draw();
      body.dataset.loaded = 'true';
    } catch (err) {
      if (!stop.signal.aborted) ctx.fail(err, body);
    }
  }
  load();
  return teardown(root, stop);
}

/** The period's service records: the first page, and exports holding every one. */
function servicesCard(services, period, fail) {
  const card = section('svc.title', 'services');
  card.querySelector('.card-head').append(exportButtons('reports/service-records', period, fail, 'services'));
  card.append(table(SERVICE_COLUMNS, services.items, 'services'), ...moreNote(services));
  return card;
}
