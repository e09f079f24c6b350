// Reported against measured on the evaluation page: each instrument's reported hours next to
// the measured ones, flagged reports first; admins and lab managers upload a report (CSV).

import { getJson, postCsv } from '../api.js';
import { el } from '../dom.js';
import { fmtNumber, t } from '../i18n.js';
import { UNIT_COLUMN } from '../institutions.js';
import { attempt, showDone } from '../notice.js';
import { exportButtons, section, table } from '../table.js';

const num = (v) => fmtNumber(v);
const finding = (v) => t(`reported.f.${v}`);
const COLUMNS = [
  { key: 'instrument_id', label: 'field.id' }, { key: 'name', label: 'field.name' },
  { key: 'finding', label: 'reported.finding', format: finding },
  { key: 'reported_effective_hours', label: 'reported.reported_effective', format: num },
  { key: 'measured_effective_hours', label: 'reported.measured_effective', format: num },
  { key: 'external_finding', label: 'reported.external_finding', format: finding },
  { key: 'reported_external_hours', label: 'reported.reported_external', format: num },
  { key: 'measured_external_hours', label: 'reported.measured_external', format: num },
  UNIT_COLUMN,
];
const UPLOADERS = ['admin', 'lab_manager'];

/** The card for year ``y``; the API limits a lab manager to their own institution. */
export function reportedCard(y, ctx, signal) {
  const path = `evaluation/${y}/reported-use`;
  const result = el('div', { class: 'reported', dataset: { loaded: 'false' } });
  const message = el('div', { class: 'message', 'aria-live': 'polite' });
  const card = section('reported.title', 'reported', el('p', { class: 'muted', text: t('reported.hint') }));
  card.querySelector('.card-head').append(exportButtons(path, {}, ctx.fail, 'reported'));

  async function load() {
    const found = await getJson(path, { limit: 1000 }, { signal });
    result.replaceChildren(
      el('p', { class: 'muted', dataset: { flagged: found.flagged }, text: `${t('reported.flagged')}: ${fmtNumber(found.flagged)} / ${fmtNumber(found.total)}` }),
      table(COLUMNS, found.items, 'reported'));
    result.dataset.loaded = 'true';
  }

  if (UPLOADERS.includes(ctx.me.role)) {
    // the browser's own picker speaks the browser's language: it stays for the keyboard and
    // form checks, out of sight, behind a button and a file name in the page's language
    const file = el('input', { type: 'file', id: 'reported-file', class: 'file-input', accept: '.csv,text/csv', required: true });
    const chosen = el('span', { class: 'file-name muted' });
    const showChosen = () => { chosen.textContent = file.files[0]?.name ?? t('reported.no_file'); };
    file.addEventListener('change', showChosen);
    const form = el('form', { class: 'filters reported-form' },
      el('label', { class: 'file-pick' }, `${t('reported.file')} `, file,
        el('span', { class: 'file-button', text: t('reported.choose') }), chosen),
      el('button', { type: 'submit', class: 'primary', text: t('reported.upload') }));
    ctx.keep(file);
    showChosen();
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      attempt(async () => {
        const stored = await postCsv(path, await file.files[0].text(), { signal });
        showDone(message, `${t('reported.stored')}: ${fmtNumber(stored.imported)}`);
        await load();
      }, message, ctx, signal);
    });
    card.append(form, message);
  }
  card.append(result);
  load().catch((err) => { if (!signal.aborted) ctx.fail(err, result); });
  return card;
}
