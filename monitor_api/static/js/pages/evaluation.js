// Annual evaluation: institution and instrument grades, and the lists the province publishes
// (low use, silent, overdue registration), each exportable as CSV or XLSX.

import { getJson } from '../api.js';
import { chartBox, countChart, teardown } from '../charts.js';
import { el } from '../dom.js';
import { fmtNumber, fmtPercent, fmtTime, t } from '../i18n.js';
import { exportButtons, section, table } from '../table.js';

const GRADES = ['优秀', '良好', '合格', '不合格'];
const grade = (v) => (v ? t(`grade.${v}`) : null);
const num = (v) => fmtNumber(v);
// the result first, so that a phone shows it before the table scrolls sideways
const RESULT = [
  { key: 'grade', label: 'eval.grade', format: grade },
  { key: 'score', label: 'eval.score', format: num },
];
const PARTS = [
  { key: 'operation', label: 'eval.operation', format: num },
  { key: 'sharing', label: 'eval.sharing', format: num },
  { key: 'management', label: 'eval.management', format: num },
];
const LISTS = [
  { name: 'institutions', title: 'eval.institutions', path: (y) => `evaluation/${y}/institutions`,
    columns: [{ key: 'rank', label: 'eval.rank' }, { key: 'institution_id', label: 'field.institution' },
      { key: 'name', label: 'field.name' }, ...RESULT, { key: 'instruments', label: 'util.instruments' },
      { key: 'effective_hours', label: 'util.effective', format: num },
      { key: 'external_hours', label: 'util.external', format: num }, ...PARTS,
      { key: 'assessed', label: 'eval.assessed', format: num }] },
  { name: 'instruments', title: 'eval.instruments', path: (y) => `evaluation/${y}/instruments`,
    columns: [{ key: 'instrument_id', label: 'field.id' }, { key: 'name', label: 'field.name' },
      ...RESULT, { key: 'institution_id', label: 'field.institution' },
      { key: 'effective_hours', label: 'util.effective', format: num },
      { key: 'external_hours', label: 'util.external', format: num },
      { key: 'openness_ratio', label: 'util.openness', format: (v) => fmtPercent(v) },
      { key: 'evaluated_days', label: 'eval.evaluated_days', format: num },
      { key: 'running_state', label: 'eval.running_state', format: (v) => t(`eval.rs.${v}`) }, ...PARTS] },
  { name: 'low', title: 'eval.low', path: (y) => `evaluation/${y}/low-utilisation`,
    columns: [{ key: 'key', label: 'field.id' }, { key: 'name', label: 'field.name' },
      { key: 'effective_hours', label: 'util.effective', format: num },
      { key: 'external_hours', label: 'util.external', format: num },
      { key: 'threshold_hours', label: 'eval.threshold_hours', format: num }] },
  { name: 'silent', title: 'eval.silent', path: () => 'evaluation/silent',
    columns: [{ key: 'instrument_id', label: 'field.id' }, { key: 'name', label: 'field.name' },
      { key: 'institution_id', label: 'field.institution' },
      { key: 'last_data', label: 'eval.last_data', format: (v) => (v ? fmtTime(v) : null) },
      { key: 'silent_days', label: 'eval.silent_days' }] },
  { name: 'overdue', title: 'eval.overdue', path: () => 'evaluation/overdue-registrations',
    columns: [{ key: 'instrument_id', label: 'field.id' }, { key: 'name', label: 'field.name' },
      { key: 'institution_id', label: 'field.institution' },
      { key: 'accepted_on', label: 'field.accepted' }, { key: 'deadline', label: 'eval.deadline' },
      { key: 'networked_on', label: 'field.networked' },
      { key: 'working_days_late', label: 'eval.days_late' }] },
];

export function render(root, ctx) {
  const stop = new AbortController();
  const year = el('input', { type: 'number', id: 'eval-year', min: 2000, max: 2100,
    value: new Date().getFullYear(), 'aria-label': t('eval.year') });
  const form = el('form', { class: 'filters' },
    el('label', {}, `${t('eval.year')} `, year),
    el('button', { type: 'submit', class: 'primary', text: t('common.apply') }));
  form.addEventListener('submit', (event) => { event.preventDefault(); load(); });
  const body = el('div', { class: 'report', dataset: { loaded: 'false' } });
  root.append(el('div', { class: 'page-head' },
    el('h1', { 'data-i18n': 'eval.title', text: t('eval.title') })), form, body);

  async function load() {
    body.dataset.loaded = 'false';
    const y = Number(year.value);
    try {
      const results = await Promise.all(LISTS.map((list) => getJson(list.path(y),
        { limit: 1000 }, { signal: stop.signal })));
      const fail = (err) => ctx.fail(err, body);
      const grades = chartBox('grades', t('eval.grades'));
      const counts = GRADES.map((g) => results[1].items.filter((i) => i.grade === g).length);
      body.replaceChildren(
        section('eval.grades', 'grades', grades.box),
        ...LISTS.map((list, n) => {
          const card = section(list.title, list.name);
          card.querySelector('.card-head').append(exportButtons(list.path(y), {}, fail, list.name));
          card.append(table(list.columns, results[n].items, list.name));
          return card;
        }));
      countChart(grades.canvas, GRADES.map(grade), counts, t('eval.count'));
      body.dataset.loaded = 'true';
    } catch (err) {
      if (!stop.signal.aborted) ctx.fail(err, body);
    }
  }
  load();
  return teardown(root, stop);
}
