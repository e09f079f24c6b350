// Messages above a form or a list of actions: what was done, or why the API refused it.

import { ApiError } from './api.js';
import { el } from './dom.js';
import { t } from './i18n.js';

/** Whether the person confirms an action that cannot be undone from the dashboard: the
 * question under ``key``. */
export const confirmed = (key) => window.confirm(t(key));

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

/** A refused request (4xx, not 401) shows the API's reason in ``box``; anything else goes to
 * the shell, which handles lost sessions and outages. */
export function showRefusal(box, err, ctx) {
  if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 401) {
    // a refused file names each bad line: {line, reason}
    const items = err.details.filter((d) => d.line).map((d) => `${t('common.line')} ${d.line}: ${d.reason}`);
    // a refusal the API gives a reason code for is said in the page's language, what to do
    // included; the API's own message follows, for its particulars (dates, booking numbers)
    const worded = err.reason && t(`reason.${err.reason}`) !== `reason.${err.reason}`
      ? t(`reason.${err.reason}`) : null;
    box.replaceChildren(el('div', { class: 'notice notice-error', role: 'alert',
      dataset: { error: err.code, reason: err.reason ?? '' } },
    el('strong', { text: t('common.refused') }),
    el('span', { class: 'detail', text: worded ?? err.message }),
    worded ? el('span', { class: 'detail muted', text: err.message }) : null,
    items.length ? el('ul', { class: 'details' }, items.map((text) => el('li', { text }))) : null));
  } else {
    ctx.fail(err, box);
  }
}
