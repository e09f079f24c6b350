// Institution names by id, read once and shared by the pages: tiles and tables name an
// institution, not just its code.

import { getJson } from './api.js';
import { el } from './dom.js';

const names = new Map();
let loading = null;

/** Load the names (once; again after a failure). */
export function loadInstitutionNames(signal) {
  loading ??= getJson('institutions', { limit: 1000 }, { signal })
    .then((page) => { for (const i of page.items) names.set(i.id, i.name); })
    .catch((err) => { loading = null; throw err; });
  return loading;
}

/** Its name, or the id while the names are unknown. */
export const institutionName = (id) => names.get(id) ?? id;

/** A table column of institution ids, shown by name (the id on hover). */
export const INSTITUTION_COLUMN = {
  key: 'institution_id', label: 'field.institution',
  format: (v) => (names.has(v) ? el('span', { title: v, text: names.get(v) }) : v),
};
