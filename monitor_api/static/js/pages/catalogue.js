// Catalogue review: the instruments whose catalogue entry awaits review (never listed, or
// changed since), what changed, and for admins the button that lists the entry as it stands.
// Lab managers see their own institution's queue, evaluators the province's.

import { getJson, postJson } from '../api.js';
import { el } from '../dom.js';
import { fmtTime, t } from '../i18n.js';
import { UNIT_COLUMN } from '../institutions.js';
import { attempt, showDone } from '../notice.js';
import { section, table } from '../table.js';

const SHOWN = 1000;
/** The catalogue's fields (the API's ``catalogue_entry``) and their labels. */
const FIELDS = [['name', 'field.name'], ['model', 'field.model'], ['maker', 'field.maker'],
  ['category_code', 'field.category'], ['location', 'field.location'],
  ['open_to_outside', 'field.open'], ['fee_schedule', 'field.fee']];

const shown = (v) => (v === true ? t('field.yes') : v === false ? t('field.no') : v || '—');

/** "Fees: 300元/样 → 500元/样; ..." for a listed instrument, or "not listed". */
function changes(item) {
  if (!item.listing) return t('catalogue.unlisted_short');
  return FIELDS.filter(([key]) => item.listing[key] !== item[key])
    .map(([key, label]) => `${t(label)}: ${shown(item.listing[key])} → ${shown(item[key])}`).join('; ');
}

export function render(root, ctx) {
  const stop = new AbortController();
  const message = el('div', { class: 'message', 'aria-live': 'polite' });
  const body = el('div', { class: 'report', dataset: { loaded: 'false' } });
  root.append(el('div', { class: 'page-head' }, el('h1', { 'data-i18n': 'catalogue.title', text: t('catalogue.title') })),
    el('p', { class: 'muted', text: t('catalogue.hint') }), message, body);

  const approve = (item) => attempt(async () => {
    await postJson(`instruments/${encodeURIComponent(item.id)}/listing`, undefined, { signal: stop.signal });
    showDone(message, `${t('catalogue.done')}: ${item.name} (${item.id})`);
    await load();
  }, message, ctx, stop.signal);

  const columns = [
    { key: 'id', label: 'field.id', format: (v) => el('a', { href: `#/instrument/${encodeURIComponent(v)}`, text: v }) },
    { key: 'name', label: 'field.name' }, UNIT_COLUMN,
    { key: 'listed_at', label: 'catalogue.listed_at', format: (v) => (v ? fmtTime(v) : null) },
    { key: 'listing', label: 'catalogue.changes', format: (_, row) => changes(row) },
  ];
  if (ctx.me.role === 'admin') {
    columns.push({ key: 'review', label: 'catalogue.review', format: (_, row) => el('button', {
      type: 'button', class: 'primary', dataset: { action: 'list' }, text: t('catalogue.approve'),
      onclick: () => approve(row) }) });
  }

  async function load() {
    body.dataset.loaded = 'false';
    try {
      const queue = await getJson('instruments', { review_pending: true, limit: SHOWN },
        { signal: stop.signal });
      const card = section('catalogue.queue', 'queue', el('p', { class: 'muted', text: `${t('catalogue.total')}: ${queue.total}` }));
      card.append(table(columns, queue.items, 'catalogue'));
      body.replaceChildren(card);
      body.dataset.loaded = 'true';
    } catch (err) {
      if (!stop.signal.aborted) ctx.fail(err, body);
    }
  }
  load();
  return () => stop.abort();
}
