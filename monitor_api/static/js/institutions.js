// Units as the pages show them: the regions institutions are registered in, read once and
// shared, and the column of lists that name each row's unit themselves.

import { getAll } from './api.js';
import { el } from './dom.js';

let loading = null;

/** The regions institutions are registered in, sorted: every institution's, however many a
 * province registers (read once; again after a failure). */
export function loadRegions(signal) {
  loading ??= getAll('institutions', {}, { signal })
    .then((items) => [...new Set(items.map((i) => i.region).filter(Boolean))]
      .sort((a, b) => a.localeCompare(b)))
    .catch((err) => { loading = null; throw err; });
  return loading;
}

/** A table column of the unit a row names beside its ``institution_id`` (the id on hover),
 * under ``institution_name`` as the API's lists have it: named however many units a province
 * registers, with no list of names to load. */
export const UNIT_COLUMN = {
  key: 'institution_name', label: 'field.institution',
  format: (v, row) => el('span', { title: row.institution_id, text: v }),
};
