// Every label comes from i18n.json (one dictionary, zh and en). The choice is remembered.

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
const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;

/** A local time; in English in ISO order (2026-11-28 14:30), which no reader can take for
 * another day whichever order their browser's date pickers use. */
export function fmtTime(value, withDate = true) {
  if (!value) return '—';
  const d = new Date(value);
  if (current === 'zh') {
    const options = withDate
      ? { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' }
      : { hour: '2-digit', minute: '2-digit' };
    return new Intl.DateTimeFormat('zh-CN', options).format(d);
  }
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(d)}`
    : clock(d);
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

/** Axis labels: the time for a short span, the day and time for a long one; the day alone
 * at midnight. */
export function fmtTick(value, long) {
  const d = new Date(value);
  const day = current === 'zh' ? `${d.getMonth() + 1}/${d.getDate()}`
    : `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (d.getHours() === 0 && d.getMinutes() === 0) return day; // midnight says which day
  return long ? `${day} ${clock(d)}` : clock(d);
}
