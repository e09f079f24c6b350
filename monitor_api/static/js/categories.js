// The national classification's named classes (GET /categories) as a <datalist>: category
// inputs offer "0102 质谱仪器" and still take any code prefix. Fetched once per page load.

import { getJson } from './api.js';
import { el } from './dom.js';

let classes = null;

/** A datalist of the classes, for inputs whose ``list`` attribute is ``id``. */
export function categoryList(id) {
  const list = el('datalist', { id });
  classes ??= getJson('categories').then((body) => body.items);
  classes.then((items) => list.replaceChildren(...items.map(
    (c) => el('option', { value: c.code, label: `${c.code} ${c.name}`, text: c.name }))))
    .catch(() => { classes = null; }); // without the names the input still takes any code
  return list;
}
