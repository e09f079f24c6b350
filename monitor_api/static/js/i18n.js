// Every label comes from i18n.json (one dictionary, zh and en). The choice is remembered.

import { OFFSET, wallClock } from './clock.js';
import { el } from './dom.js';

const STORE = 'instrushare.lang';
export const LANGS = ['zh', 'en'];
let strings = { zh: {}, en: {} };
let current = 'zh';

export async function loadStrings() {
  const resp = await fetch(new URL('../i18n.json', import.meta.url), { cache: 'no-cache' });
  strings = await resp.json();
  const saved = localStorage.getItem(STORE);
  current = LANGS.includes(saved) ? saved
    : (navigator.language || 'zh').toLowerCase().startsWith('zh') ? 'zh' : 'en';
  document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
}

export function lang() { return current; }

export function setLang(value) {
  if (!LANGS.includes(value)) return;
  current = value;
  localStorage.setItem(STORE, value);
  document.documentElement.lang = value === 'zh' ? 'zh-CN' : 'en';
}

/** The label for ``key``; a missing key shows itself, so gaps are visible (and tested). */
export function t(key) {
  return strings[current]?.[key] ?? strings.en?.[key] ?? key;
}

/** Of a name the server gives in both languages, the one to show; Chinese when it has no
 * English. */
export function inLanguage(zh, en) {
  return current === 'en' && en ? en : zh;
}

const locale = () => (current === 'zh' ? 'zh-CN' : 'en-GB');

const pad = (n) => String(n).padStart(2, '0');
const clock = (c) => `${pad(c.hours)}:${pad(c.minutes)}`;

/** A time on Shanghai's clock (clock.js), whatever the browser's zone: in Chinese
 * 2026/11/28 14:30, in English in ISO order (2026-11-28 14:30), which no reader can take for
 * another day whichever order their browser's date pickers use. */
export function fmtTime(value, withDate = true) {
  if (!value) return '—';
  const c = wallClock(value);
  if (!withDate) return clock(c);
  const sep = current === 'zh' ? '/' : '-';
  return `${c.year}${sep}${pad(c.month)}${sep}${pad(c.day)} ${clock(c)}`;
}

export function fmtNumber(value, digits = 1) {
  if (value === null || value === undefined) return '—';
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(value);
}

export function fmtPercent(value) {
  if (value === null || value === undefined) return '—';
  return new Intl.NumberFormat(locale(), { style: 'percent', minimumFractionDigits: 1,
    maximumFractionDigits: 1 }).format(value); // 16.0% beside 32.7%: one decimal throughout
}

/** The note beside the inputs of a form taking dates or times: they are China Standard
 * Time, as every time the dashboard shows. */
export const zoneNote = () => el('span', { class: 'muted', dataset: { zone: OFFSET },
  text: t('common.zone') });

/** Axis labels (Shanghai's clock): the time for a short span, the day and time for a long
 * one; the day alone at midnight. */
export function fmtTick(value, long) {
  const c = wallClock(value);
  const day = current === 'zh' ? `${c.month}/${c.day}` : `${pad(c.month)}-${pad(c.day)}`;
  if (c.hours === 0 && c.minutes === 0) return day; // midnight says which day
  return long ? `${day} ${clock(c)}` : clock(c);
}
