// Duplicate-purchase review (查重评议) on the evaluation page: before a unit buys an instrument,
// the instruments of its class, their use in the year and the hours outside users could book.

import { getJson } from '../api.js';
import { categoryList } from '../categories.js';
import { el } from '../dom.js';
import { fmtNumber, t } from '../i18n.js';
import { INSTITUTION_COLUMN, loadInstitutionNames } from '../institutions.js';
import { attempt } from '../notice.js';
import { exportButtons, section, table } from '../table.js';

const num = (v) => fmtNumber(v);
const COLUMNS = [
  { key: 'instrument_id', label: 'field.id' }, { key: 'name', label: 'field.name' },
  { key: 'capacity', label: 'review.capacity', format: (v) => t(`review.cap.${v}`) },
  { key: 'spare_hours', label: 'review.spare_hours', format: num },
  { key: 'effective_hours', label: 'util.effective', format: num },
  { key: 'target_hours', label: 'review.target_hours', format: num },
  INSTITUTION_COLUMN, { key: 'region', label: 'review.region' },
  { key: 'category_code', label: 'field.category' },
  { key: 'running_state', label: 'eval.running_state', format: (v) => t(`eval.rs.${v}`) },
];

/** The review card for year ``y``: a class (and region) in, the verdict and the list out. */
export function reviewCard(y, ctx, signal) {
  const category = el('input', { type: 'text', id: 'review-category', inputmode: 'numeric', required: true,
    pattern: '[0-9]{2}([0-9]{2}){0,2}', maxlength: 6, placeholder: '0104', 'aria-label': t('review.category'),
    list: 'review-category-list' });
  const region = el('input', { type: 'text', id: 'review-region', maxlength: 100, 'aria-label': t('review.region') });
  const form = el('form', { class: 'filters' },
    el('label', {}, `${t('review.category')} `, category, categoryList('review-category-list')),
    el('label', {}, `${t('review.region')} `, region),
    el('button', { type: 'submit', class: 'primary', text: t('review.run') }));
  const result = el('div', { dataset: { review: 'idle' } });
  const card = section('review.title', 'review', el('p', { class: 'muted', text: t('review.hint') }), form, result);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = { category: category.value.trim(), region: region.value.trim() };
    const path = `evaluation/${y}/duplicate-review`;
    attempt(async () => {
      const [found] = await Promise.all([getJson(path, { ...params, limit: 1000 }, { signal }),
        loadInstitutionNames(signal)]);
      const verdict = `${t(`review.verdict.${found.verdict}`)} · ${t('review.shareable')}: ${fmtNumber(found.shareable)}`
        + ` · ${t('review.shareable_hours')}: ${fmtNumber(found.shareable_hours)}`
        + ` · ${t('review.fully_used')}: ${fmtNumber(found.fully_used)}`;
      result.replaceChildren(
        el('p', { class: 'verdict', dataset: { verdict: found.verdict }, text: verdict }),
        exportButtons(path, params, (err) => ctx.fail(err, result), 'review'),
        table(COLUMNS, found.items, 'review'));
      result.dataset.review = 'done';
    }, result, ctx, signal);
  });
  return card;
}
