// Publication of a year's evaluation: whether and when it was published and, for admins, the
// form that publishes (freezes) the reviewed results for every unit to read, or withdraws them.

import { deleteResource, getJson, putJson } from '../api.js';
import { thisYear } from '../clock.js';
import { el } from '../dom.js';
import { fmtTime, t } from '../i18n.js';
import { attempt, confirmed } from '../notice.js';
import { section } from '../table.js';

/** Who published results or entered a mark: the API's "admin:1" (role and token id) as
 * "Administrator #1" in the page's language. */
export function tokenHolder(v) {
  const [role, id] = v.split(':');
  return t(`role.${role}`) === `role.${role}` ? v : `${t(`role.${role}`)} #${id}`;
}

/** The year's publication, or null when it has none. */
export async function publicationOf(y, signal) {
  const found = await getJson('evaluation/publications', { year: y }, { signal });
  return found.items[0] ?? null; // the list, not the year's 404: no error in the console
}

/** The card saying whether and when year ``y`` was published; admins also get the form.
 * ``reload`` renders the page again after a change. */
export function publicationCard(y, found, ctx, signal, reload) {
  const line = found
    ? [`${t('pub.published')} ${fmtTime(found.published_at)}`, tokenHolder(found.published_by), found.note]
      .filter(Boolean).join(' · ')
    : t('pub.not_published');
  const card = section('pub.title', 'publication',
    el('p', { class: 'muted', dataset: { published: found ? 'true' : 'false', year: y }, text: line }));
  if (ctx.me.role !== 'admin') return card;
  if (!found && y >= thisYear()) { // results still move until the year is over (Shanghai)
    card.append(el('p', { class: 'muted', dataset: { publishable: 'later' },
      text: t('pub.after_year').replace('{date}', `${y + 1}-01-01`) }));
    return card;
  }

  const message = el('div', { class: 'message', 'aria-live': 'polite' });
  const act = (change) => attempt(async () => {
    await change();
    await reload();
  }, message, ctx, signal);
  const note = el('input', { type: 'text', id: 'publication-note', maxlength: 2000, value: found?.note ?? '' });
  const form = el('form', { class: 'filters publish-form' },
    el('label', {}, `${t('pub.note')} `, note),
    el('button', { type: 'submit', class: 'primary', text: t(found ? 'pub.republish' : 'pub.publish') }));
  ctx.keep(note);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    act(() => putJson(`evaluation/${y}/publication`, { note: note.value }, { signal }));
  });
  if (found) {
    form.append(el('button', { type: 'button', class: 'withdraw', text: t('pub.withdraw'),
      onclick: () => confirmed('pub.confirm_withdraw')
        && act(() => deleteResource(`evaluation/${y}/publication`, { signal })) }));
  }
  card.append(el('p', { class: 'muted', text: t('pub.hint') }), form, message);
  return card;
}
