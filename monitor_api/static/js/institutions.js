// Institution names by id (and the regions they are in), read once and shared by the pages:
// tiles and tables name an institution, not just its code; and the column of lists that name
// it themselves.

import { getJson } from './api.js';
import { el } from './dom.js';

const names = new Map();
const regions = new Set();
let loading = null;

/** Load the names (once; again after a failure). */
export function loadInstitutionNames(signal) {
  loading ??= getJson('institutions', { limit: 1000 }, { signal })
    .then((page) => {
      for (const i of page.items) {
        names.set(i.id, i.name);
        if (i.region) regions.add(i.region);
      }
    })
    .catch((err) => { loading = null; throw err; });
  return loading;
}

/** The regions institutions are registered in, sorted (none while the names are unknown). */
export const knownRegions = () => [...regions].sort((a, b) => a.localeCompare(b));

/** Its name, or the id while the names are unknown. */
export const institutionName = (id) => names.get(id) ?? id;

/** A table column of institution ids, shown by name (the id on hover), for lists that carry
 * only the id: past the names loaded (the first 1,000) it shows the id. */
export const INSTITUTION_COLUMN = {
  key: 'institution_id', label: 'field.institution',
  format: (v) => (names.has(v) ? el('span', { title: v, text: names.get(v) }) : v),
};

/** A table column of the unit a row names beside its ``institution_id`` (the id on hover),
 * under ``institution_name`` as the API's lists have it: named however many units a province
 * registers, with no list of names to load. */
export const UNIT_COLUMN = {
  key: 'institution_name', label: 'field.institution',
  format: (v, row) => el('span', { title: row.institution_id, text: v }),
};
