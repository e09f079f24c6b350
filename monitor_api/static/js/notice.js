// Messages above a form or a list of actions: what was done, or why the API refused it.

import { ApiError } from './api.js';
import { el } from './dom.js';
import { fmtTime, lang, t } from './i18n.js';

/** Whether the person confirms an action that cannot be undone from the dashboard: the
 * question under ``key``. */
export const confirmed = (key) => window.confirm(t(key));

/** As ``confirmed``, asking for a text to go with the action (a reason, which may be left
 * empty): the text, or null when the person keeps things as they are. */
export const answered = (key) => window.prompt(t(key), '');

/** Show ``text`` as done in ``box``. */
export function showDone(box, text) {
  box.replaceChildren(el('div', { class: 'notice notice-ok', role: 'status', text }));
}

/** Show the problem under i18n ``key`` in ``box``, found before any request was made;
 * ``code`` marks it (data-error) as the API's codes mark refusals. */
export function showProblem(box, key, code) {
  box.replaceChildren(el('div', { class: 'notice notice-error', role: 'alert',
    dataset: { error: code }, text: t(key) }));
}

/** Run ``action`` (a request and what follows it); a refusal shows in ``box`` as
 * ``showRefusal`` shows it, unless the page was left meanwhile (``signal`` aborted). */
export async function attempt(action, box, ctx, signal) {
  try {
    await action();
  } catch (err) {
    if (!signal.aborted) showRefusal(box, err, ctx);
  }
}

/** An English sentence's words, numbers left out (they are particulars) and a plural's s. */
const words = (text) => (text.toLowerCase().match(/[a-z]{2,}/g) ?? []).map((w) => w.replace(/s$/, ''));

/** Whether the API's English ``message`` says more than the page's English ``worded``: more
 * than a third of its words are not in it. */
function addsTo(message, worded) {
  const said = new Set(words(worded));
  const all = words(message);
  return all.filter((w) => !said.has(w)).length * 3 > all.length;
}

/** ``text`` with each ``{name}`` replaced by ``details.name`` (a limit the API states). */
const filled = (text, details) => text.replace(/\{(\w+)\}/g,
  (whole, name) => String(details?.[name] ?? whole));

/** The particulars a refusal's ``details`` name (bookings, a date), in the page's language. */
function particulars(details) {
  if (!details || Array.isArray(details)) return [];
  return [
    details.booking_id == null ? null : `${t('book.booking')} #${details.booking_id}`,
    details.no_shows?.length
      ? `${t('notice.no_shows')}: ${details.no_shows.map((id) => `#${id}`).join(', ')}` : null,
    details.resumes_at ? `${t('notice.resumes_at')}: ${fmtTime(details.resumes_at)}` : null,
  ].filter(Boolean);
}

/** HTTP statuses the dictionary words (error.status.*); 400 means what 422 does. */
const WORDED_STATUS = {
  400: '422', 403: '403', 404: '404', 409: '409', 413: '413', 415: '415', 422: '422',
};

/** What an answer's HTTP ``status`` means, in the page's language; null for none (no answer). */
function statusSentence(status) {
  if (!(status >= 400)) return null;
  return t(`error.status.${status >= 500 ? '5xx' : WORDED_STATUS[status] ?? 'other'}`);
}

/**
 * Why the API refused ``err``, as lines (spans) of a notice: the page's own words (``worded``,
 * else the sentence for its reason code) with the particulars its details name, in the page's
 * language. The API's English message shows on English pages only, where the page has no words
 * for it or it says more; a Chinese page says what the HTTP status means instead. The notice
 * keeps that message as its title, for support.
 */
export function explained(err, worded = null) {
  const key = `reason.${err.reason}`;
  const own = worded ?? (err.reason && t(key) !== key ? filled(t(key), err.details) : null);
  const found = particulars(err.details);
  const english = lang() === 'en' && err.message && (!own || addsTo(err.message, own))
    ? err.message : null;
  const meaning = err.message && !own && !english ? statusSentence(err.status) : null;
  return [own ?? meaning, found.length ? found.join(' · ') : null, english].filter(Boolean)
    .map((text, n) => el('span', { class: n ? 'detail muted' : 'detail', text }));
}

/** A refused request (4xx, not 401) shows the API's reason in ``box``; anything else goes to
 * the shell, which handles lost sessions and outages. */
export function showRefusal(box, err, ctx) {
  if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 401) {
    // a refused file names each bad line, {line, reason}, in the API's English, under a
    // heading in the page's language
    const lines = Array.isArray(err.details) ? err.details.filter((d) => d.line) : [];
    box.replaceChildren(el('div', { class: 'notice notice-error', role: 'alert',
      title: err.message || null, dataset: { error: err.code, reason: err.reason ?? '' } },
    el('strong', { text: t('common.refused') }),
    explained(err, lines.length ? t('notice.bad_lines') : null),
    lines.length ? el('ul', { class: 'details' },
      lines.map((d) => el('li', { text: `${t('common.line')} ${d.line}: ${d.reason}` }))) : null));
  } else {
    ctx.fail(err, box);
  }
}
