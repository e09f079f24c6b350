// The national classification's named classes (GET /categories) as a <datalist>: category
// inputs offer "0102 质谱仪器" (or "0102 Mass spectrometers") and still take any code prefix;
// what is typed into one is read as a code or a class's name. Fetched once per page load.

import { getJson } from './api.js';
import { el } from './dom.js';
import { inLanguage } from './i18n.js';

let classes = null;

/** The classes, [{code, name, name_en}] (fetched once; again after a failure). */
export function loadCategories() {
  classes ??= getJson('categories').then((body) => body.items)
    .catch((err) => { classes = null; throw err; });
  return classes;
}

/** A datalist of the classes, for inputs whose ``list`` attribute is ``id``. */
export function categoryList(id) {
  const list = el('datalist', { id });
  loadCategories().then((items) => list.replaceChildren(...items.map((c) => {
    const name = inLanguage(c.name, c.name_en);
    return el('option', { value: c.code, label: `${c.code} ${name}`, text: name });
  }))).catch(() => {}); // without the names the input still takes any code
  return list;
}

/** The codes a category input's ``text`` names: a code as typed (its first word: the list's
 * "0102 质谱仪器" is 0102), else those of the classes whose name in either language is
 * ``text`` (any case) or, with ``part``, holds it ("electron", "质谱"). */
export async function namedCodes(text, { part = false } = {}) {
  const typed = text.trim();
  const first = typed.split(/\s+/)[0];
  if (/^[0-9]+$/.test(first)) return [first];
  const wanted = typed.toLowerCase();
  const matches = (name) => (part ? name.includes(wanted) : name === wanted);
  return (await loadCategories())
    .filter((c) => [c.name, c.name_en].some((n) => n && matches(n.toLowerCase())))
    .map((c) => c.code);
}
