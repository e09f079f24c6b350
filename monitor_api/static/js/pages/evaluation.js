// Annual evaluation: institution and instrument grades, and the lists the province publishes
// (low use, silent, overdue registration), each exportable as CSV or XLSX, and the units'
// reports against the measured hours; lab managers read a year's published results instead,
// and report and check their own hours.

import { getJson, putJson } from '../api.js';
import { chartBox, countChart, teardown } from '../charts.js';
import { dateInput, thisYear } from '../clock.js';
import { el } from '../dom.js';
import { fmtNumber, fmtPercent, fmtTime, t } from '../i18n.js';
import { UNIT_COLUMN } from '../institutions.js';
import { attempt, showDone } from '../notice.js';
import { publicationCard, publicationOf, tokenHolder } from './publication.js';
import { reportedCard } from './reported.js';
import { reviewCard } from './review.js';
import { exportButtons, moreNote, section, table } from '../table.js';

const GRADES = ['优秀', '良好', '合格', '不合格'];
const grade = (v) => (v ? t(`grade.${v}`) : null);
const num = (v) => fmtNumber(v);
// service and voucher institutions' stars; the incubation pool is not rated (null)
const stars = (v) => (v == null ? null : '★'.repeat(v) || fmtNumber(0));
// the result first, so that a phone shows it before the table scrolls sideways
const RESULT = [
  { key: 'grade', label: 'eval.grade', format: grade, short: true },
  { key: 'score', label: 'eval.score', format: num, short: true },
];
const PARTS = [
  { key: 'operation', label: 'eval.operation', format: num },
  { key: 'sharing', label: 'eval.sharing', format: num },
  { key: 'management', label: 'eval.management', format: num },
];
/** The day the overdue-registration list is drawn up on: a year's last day once it is
 * over, today while it runs (Shanghai's days, as the API counts them). */
const asOf = (y) => (y < thisYear() ? `${y}-12-31` : dateInput());
// a list's ``params`` go with its request and its exports; its ``note`` says what it covers
const LISTS = [
  { name: 'institutions', title: 'eval.institutions', path: (y) => `evaluation/${y}/institutions`,
    published: (y) => `evaluation/${y}/published/institutions`,
    // named (the id on hover), so that the result beside the name is in sight on a phone
    columns: [{ key: 'rank', label: 'eval.rank', short: true }, { ...UNIT_COLUMN, key: 'name' },
      ...RESULT, { key: 'stars', label: 'eval.stars', format: stars, short: true },
      { key: 'instruments', label: 'util.instruments', short: true },
      { key: 'open_share', label: 'eval.open_share', format: (v) => fmtPercent(v) },
      { key: 'effective_hours', label: 'util.effective', format: num },
      { key: 'external_hours', label: 'util.external', format: num }, ...PARTS,
      { key: 'assessed', label: 'eval.assessed', format: num }] },
  { name: 'instruments', title: 'eval.instruments', path: (y) => `evaluation/${y}/instruments`,
    published: (y) => `evaluation/${y}/published/instruments`,
    columns: [{ key: 'instrument_id', label: 'field.id' }, { key: 'name', label: 'field.name' },
      ...RESULT, UNIT_COLUMN,
      { key: 'effective_hours', label: 'util.effective', format: num },
      { key: 'external_hours', label: 'util.external', format: num },
      { key: 'openness_ratio', label: 'util.openness', format: (v) => fmtPercent(v) },
      { key: 'evaluated_days', label: 'eval.evaluated_days', format: num },
      // with the faults it counts, where any: "Occasional faults (2)"
      { key: 'running_state', label: 'eval.running_state',
        format: (v, row) => `${t(`eval.rs.${v}`)}${row.faults ? ` (${num(row.faults)})` : ''}` },
      { key: 'sharing_mode', label: 'eval.sharing_mode', format: (v) => t(`eval.sm.${v}`) },
      ...PARTS] },
  { name: 'low', title: 'eval.low', path: (y) => `evaluation/${y}/low-utilisation`,
    columns: [{ key: 'key', label: 'field.id' }, { key: 'name', label: 'field.name' },
      UNIT_COLUMN, { key: 'effective_hours', label: 'util.effective', format: num },
      { key: 'external_hours', label: 'util.external', format: num },
      { key: 'threshold_hours', label: 'eval.threshold_hours', format: num }] },
  { name: 'silent', title: 'eval.silent', path: () => 'evaluation/silent',
    note: (_, page) => t('eval.silent_note').replace('{days}', page.days),
    columns: [{ key: 'instrument_id', label: 'field.id' }, { key: 'name', label: 'field.name' },
      UNIT_COLUMN,
      { key: 'last_data', label: 'eval.last_data', format: (v) => (v ? fmtTime(v) : null) },
      // null: no data ever came, which is worth saying rather than a dash
      { key: 'silent_days', label: 'eval.silent_days', format: (v) => v ?? t('eval.never_reported') },
      // silence to be expected: the registry marks it for disposal
      { key: 'awaiting_disposal', label: 'eval.rs.awaiting_disposal',
        format: (v) => t(v ? 'field.yes' : 'field.no') }] },
  { name: 'overdue', title: 'eval.overdue', path: () => 'evaluation/overdue-registrations',
    params: (y) => ({ as_of: asOf(y) }),
    note: (y) => t('eval.overdue_note').replace('{date}', asOf(y)),
    columns: [{ key: 'instrument_id', label: 'field.id' }, { key: 'name', label: 'field.name' },
      UNIT_COLUMN,
      { key: 'accepted_on', label: 'field.accepted' }, { key: 'deadline', label: 'eval.deadline' },
      { key: 'networked_on', label: 'field.networked' },
      { key: 'working_days_late', label: 'eval.days_late' }] },
];

const ASSESSMENT_COLUMNS = [
  { key: 'institution_id', label: 'field.institution' }, { key: 'name', label: 'field.name' },
  { key: 'mark', label: 'eval.mark', format: (v) => fmtNumber(Number(v)), short: true },
  { key: 'note', label: 'eval.note' }, { key: 'assessed_by', label: 'eval.assessed_by', format: tokenHolder },
  { key: 'assessed_at', label: 'eval.assessed_at', format: (v) => fmtTime(v) },
];

/** "Points: operation 40 · sharing 20 · ..." from the rules in force. */
const pointsLine = (rules) => `${t('eval.points')}: ${[
  ['eval.operation', rules.operation_points], ['eval.sharing', rules.sharing_points],
  ['eval.management', rules.management_points], ['eval.assessed', rules.assessed_points],
].map(([key, points]) => `${t(key)} ${fmtNumber(points)}`).join(' · ')}`;

export function render(root, ctx) {
  const stop = new AbortController();
  // Lab managers read published results: the latest year that can have them is the last one.
  const readsPublished = ctx.me.role === 'lab_manager';
  // required: an emptied year would ask the API for year 0 and read its refusal
  const year = el('input', { type: 'number', id: 'eval-year', min: 2000, max: 2100, required: true,
    value: thisYear() - (readsPublished ? 1 : 0), 'aria-label': t('eval.year') });
  const form = el('form', { class: 'filters' },
    el('label', {}, `${t('eval.year')} `, year),
    el('button', { type: 'submit', class: 'primary', text: t('common.apply') }));
  form.addEventListener('submit', (event) => { event.preventDefault(); load(); });
  const body = el('div', { class: 'report', dataset: { loaded: 'false' } });
  const message = el('div', { class: 'message', 'aria-live': 'polite' });
  // an evaluation of several years (rules: cycle_years) names the years it covers, and one
  // of a year not over says its scores are provisional
  const covers = el('p', { class: 'muted', id: 'eval-covers' });
  const showCovers = (page, y) => {
    covers.textContent = [
      page && page.first_year !== y ? `${t('eval.covers')}: ${page.first_year}–${y}` : '',
      // live scores only: lab managers read published results (a later year: not begun)
      y === thisYear() && !readsPublished ? t('eval.provisional') : '',
    ].filter(Boolean).join(' · ');
  };
  root.append(el('div', { class: 'page-head' },
    el('h1', { 'data-i18n': 'eval.title', text: t('eval.title') })), form, covers, message, body);

  /** Admins enter a top-level institution's mark for the year (the API checks the rest). */
  function assessForm(y, institutions) {
    const who = el('select', { id: 'assess-institution', required: true },
      institutions.map((i) => el('option', { value: i.institution_id, text: `${i.name} (${i.institution_id})` })));
    const mark = el('input', { type: 'number', id: 'assess-mark', min: 0, max: 100, step: 0.01, required: true });
    const note = el('input', { type: 'text', id: 'assess-note', required: true, maxlength: 2000 });
    const entry = el('form', { class: 'filters assess-form' },
      el('label', {}, `${t('field.institution')} `, who), el('label', {}, `${t('eval.mark')} `, mark),
      el('label', {}, `${t('eval.note')} `, note),
      el('button', { type: 'submit', class: 'primary', text: t('eval.save') }));
    ctx.keep(who, mark, note);
    entry.addEventListener('submit', (event) => {
      event.preventDefault();
      attempt(async () => {
        const saved = await putJson(`evaluation/${y}/assessments/${encodeURIComponent(who.value)}`,
          { mark: Number(mark.value), note: note.value }, { signal: stop.signal });
        await load(); // which clears the message: said after it
        showDone(message, `${t('eval.saved')}: ${saved.name} ${fmtNumber(Number(saved.mark))}`);
      }, message, ctx, stop.signal);
    });
    return entry;
  }

  function assessments(y, rules, page, institutions) {
    // rules giving the assessed part 0 points (the default) record a mark that counts for nothing
    const hint = Number(rules.assessed_points) ? t('eval.assess_hint') : t('eval.assess_unweighted');
    const card = section('eval.assessments', 'assessments', el('p', { class: 'muted', dataset: { points: 'rules' },
      text: `${hint} ${pointsLine(rules)}` }));
    card.querySelector('.card-head').append(exportButtons(`evaluation/${y}/assessments`, {}, ctx.fail, 'assessments'));
    card.append(table(ASSESSMENT_COLUMNS, page.items, 'assessments'));
    if (ctx.me.role === 'admin') card.append(assessForm(y, institutions));
    return card;
  }

  /** A list's card for year ``y``: what it covers, its table (``page``, from ``path``) and
   * its export buttons. */
  function listCard(list, y, path, page) {
    const card = section(list.title, list.name);
    card.querySelector('.card-head')
      .append(exportButtons(path, list.params?.(y) ?? {}, ctx.fail, list.name));
    if (list.note) {
      card.append(el('p', { class: 'muted', dataset: { note: list.name }, text: list.note(y, page) }));
    }
    card.append(table(list.columns, page.items, list.name), ...moreNote(page));
    return card;
  }

  /** The grade distribution in ``box`` of every instrument of the year, from the counts the
   * instruments' first ``page`` carries for the whole list: a province's thousands, not only
   * the table's first thousand, without asking for the pages after it. */
  function drawGrades(box, page) {
    const counts = GRADES.map((g) => page.grades[g]);
    if (counts.some(Boolean)) {
      const chart = chartBox('grades', t('eval.grades'));
      box.replaceChildren(chart.box);
      countChart(chart.canvas, GRADES.map(grade), counts, t('eval.count'));
    } else { // a note, as an empty table has, not a bare grid
      box.replaceChildren(el('p', { class: 'muted', dataset: { empty: 'grades' }, text: t('common.empty') }));
    }
  }

  /** The grades card; drawn (drawGrades) once it is on the page, where the chart has room. */
  const gradesCard = () => {
    const box = el('div', { class: 'grades' });
    return [section('eval.grades', 'grades', box), (page) => drawGrades(box, page)];
  };

  /** What a lab manager sees: the published ranking and their own instruments' results,
   * with their grades as the evaluators' page has them. */
  async function loadPublished(y) {
    const found = await publicationOf(y, stop.signal);
    const card = publicationCard(y, found, ctx, stop.signal, load);
    if (!found) {
      body.replaceChildren(card, reportedCard(y, ctx, stop.signal));
      return;
    }
    const lists = LISTS.filter((list) => list.published);
    const pages = await Promise.all(lists.map((list) => getJson(list.published(y), { limit: 1000 }, { signal: stop.signal })));
    showCovers(pages[0], y);
    const [grades, draw] = gradesCard();
    body.replaceChildren(card, grades,
      ...lists.map((list, n) => listCard(list, y, list.published(y), pages[n])),
      reportedCard(y, ctx, stop.signal));
    draw(pages[1]); // the instruments'
  }

  async function load() {
    body.dataset.loaded = 'false';
    message.replaceChildren(); // what was said of another year's form
    const y = Number(year.value);
    showCovers(null, y);
    if (y > thisYear()) { // nothing to judge yet
      body.replaceChildren(el('p', { class: 'muted', dataset: { empty: 'year' },
        text: t('eval.not_begun') }));
      body.dataset.loaded = 'true';
      return;
    }
    try {
      if (readsPublished) {
        await loadPublished(y);
        body.dataset.loaded = 'true';
        return;
      }
      const [rules, assessed, published, ...results] = await Promise.all([
        getJson('evaluation/rules', {}, { signal: stop.signal }),
        getJson(`evaluation/${y}/assessments`, { limit: 1000 }, { signal: stop.signal }),
        publicationOf(y, stop.signal),
        ...LISTS.map((list) => getJson(list.path(y), { ...list.params?.(y), limit: 1000 },
          { signal: stop.signal }))]);
      showCovers(results[0], y);
      const [grades, draw] = gradesCard();
      body.replaceChildren(
        grades,
        ...LISTS.map((list, n) => listCard(list, y, list.path(y), results[n])),
        assessments(y, rules, assessed, results[0].items),
        publicationCard(y, published, ctx, stop.signal, load),
        reportedCard(y, ctx, stop.signal),
        reviewCard(y, ctx, stop.signal));
      draw(results[1]); // the instruments'
      body.dataset.loaded = 'true';
    } catch (err) {
      if (!stop.signal.aborted) ctx.fail(err, body);
    }
  }
  ctx.keep(year);
  load();
  return teardown(root, stop);
}
