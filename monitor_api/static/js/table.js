// Tables (scrolling sideways on a phone) and export buttons for report lists.

import { download } from './api.js';
import { el } from './dom.js';
import { fmtNumber, lang, t } from './i18n.js';

/** A column's header. A short column (a rank, a grade, a score: a word over a few
 * characters) keeps it on one line in every language, so takes no more room than it needs;
 * other headers wrap, but are given the room that keeps 有效工作机时 from a character a line. */
const headerCell = (c) => el('th', { scope: 'col', class: c.short ? 'short' : null, text: t(c.label) });

/** ``columns``: [{ key, label (dictionary key), format?(value, row) -> text or a node,
 * short? }]. */
export function table(columns, rows, name) {
  if (!rows.length) return el('p', { class: 'muted', dataset: { table: name }, text: t('common.empty') });
  return el('div', { class: 'table-wrap' },
    el('table', { dataset: { table: name } },
      el('thead', {}, el('tr', {}, columns.map(headerCell))),
      el('tbody', {}, rows.map((row) => el('tr', { dataset: row.id === undefined ? null : { id: row.id } }, columns.map((c) => {
        const value = c.format ? c.format(row[c.key], row) : row[c.key];
        // data-label: its header, which a table stacked into cards on a phone shows above it
        return el('td', { dataset: { key: c.key, label: t(c.label) } },
          value === null || value === undefined || value === '' ? '—' : value);
      }))))));
}

/** What goes under a table of one ``page`` of a longer list: a note of how many rows it shows
 * of how many, ``key`` wording it (by default: the exports hold every row); nothing (an empty
 * list) when it shows them all. */
export function moreNote(page, key = 'table.more') {
  if (page.total <= page.items.length) return [];
  return [el('p', { class: 'muted', dataset: { more: page.total }, text: t(key)
    .replace('{shown}', fmtNumber(page.items.length, 0)).replace('{total}', fmtNumber(page.total, 0)) })];
}

/** CSV and XLSX buttons for an export endpoint, headers in the dashboard's language. A
 * download that fails is said under the card's head by ``fail(err, box)`` (the page's
 * ``ctx.fail``): the table shown stays. */
export function exportButtons(path, params, fail, name) {
  const said = el('div', { class: 'export-failed', dataset: { exportFailed: name } });
  const button = (format, key) => el('button', {
    type: 'button', class: 'export', dataset: { export: `${name}-${format}` }, text: t(key),
    onclick: async (event) => {
      event.currentTarget.disabled = true;
      const target = event.currentTarget;
      said.remove(); // what the last attempt said
      try {
        await download(path, { ...params, format, lang: lang() });
      } catch (err) {
        (target.closest('.card-head') ?? target.parentElement).after(said);
        fail(err, said);
      } finally {
        target.disabled = false;
      }
    },
  });
  return el('div', { class: 'exports' }, button('csv', 'common.export_csv'),
    button('xlsx', 'common.export_xlsx'));
}

/** A titled card holding a chart/table, with export buttons in its header. */
export function section(titleKey, name, ...content) {
  return el('section', { class: 'card', dataset: { section: name } },
    el('div', { class: 'card-head' }, el('h2', { text: t(titleKey) })), ...content);
}
