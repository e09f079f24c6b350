// Duplicate-purchase review (查重评议) on the evaluation page: before a unit buys an instrument,
// the instruments of its class, their use in the year and the hours outside users could book.

import { ApiError, getJson } from '../api.js';
import { categoryList, namedCodes } from '../categories.js';
import { el } from '../dom.js';
import { fmtNumber, t } from '../i18n.js';
import { UNIT_COLUMN, loadRegions } from '../institutions.js';
import { attempt, showProblem } from '../notice.js';
import { exportButtons, section, table } from '../table.js';

const num = (v) => fmtNumber(v);
const COLUMNS = [
  { key: 'instrument_id', label: 'field.id' }, { key: 'name', label: 'field.name' },
  { key: 'capacity', label: 'review.capacity', format: (v) => t(`review.cap.${v}`) },
  { key: 'spare_hours', label: 'review.spare_hours', format: num },
  { key: 'effective_hours', label: 'util.effective', format: num },
  { key: 'target_hours', label: 'review.target_hours', format: num },
  UNIT_COLUMN, { key: 'region', label: 'review.region', short: true },
  { key: 'category_code', label: 'field.category' },
  { key: 'running_state', label: 'eval.running_state', format: (v) => t(`eval.rs.${v}`) },
];

const CODE = /^[0-9]{2}([0-9]{2}){0,2}$/;

/** The class code ``text`` names (categories.js): a code as typed (2, 4 or 6 digits), or the
 * code of the class named in either language; null for none. The API takes codes only, and
 * refuses one of no class (``unknownClass``). */
async function classCode(text) {
  const [code] = await namedCodes(text);
  return code && CODE.test(code) ? code : null;
}

/** Whether ``err`` is the API's refusal of a code that is neither a class of the national
 * classification nor one instruments are registered in (say, "0199" with none). */
const unknownClass = (err) => err instanceof ApiError && err.status === 422
  && err.message.startsWith('category:');

/** The review card for year ``y``: a class (and region) in, the verdict and the list out. */
export function reviewCard(y, ctx, signal) {
  const category = el('input', { type: 'text', id: 'review-category', required: true,
    maxlength: 100, placeholder: '0104', 'aria-label': t('review.category'),
    list: 'review-category-list' });
  // the regions institutions are registered in: another would find nothing
  const region = el('select', { id: 'review-region', 'aria-label': t('review.region') },
    el('option', { value: '', text: t('review.whole_province') }));
  loadRegions(signal)
    .then((regions) => region.append(...regions.map((r) => el('option', { value: r, text: r }))))
    .catch(() => {}); // the province as a whole can still be reviewed
  const form = el('form', { class: 'filters' },
    el('label', {}, `${t('review.category')} `, category, categoryList('review-category-list')),
    el('label', {}, `${t('review.region')} `, region),
    el('button', { type: 'submit', class: 'primary', text: t('review.run') }));
  ctx.keep(category, region);
  const result = el('div', { dataset: { review: 'idle' } });
  const card = section('review.title', 'review', el('p', { class: 'muted', text: t('review.hint') }), form, result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    result.replaceChildren(); // the last review goes at once: another is asked
    result.dataset.review = 'busy';
    const path = `evaluation/${y}/duplicate-review`;
    await attempt(async () => {
      const code = await classCode(category.value);
      if (!code) {
        showProblem(result, 'review.unknown_class', 'category');
        return;
      }
      const params = { category: code, region: region.value };
      const found = await getJson(path, { ...params, limit: 1000 }, { signal }).catch((err) => {
        if (!unknownClass(err)) throw err;
        return null;
      });
      if (!found) {
        showProblem(result, 'review.unknown_class', 'category');
        return;
      }
      const said = found.verdict === 'none_registered' && params.region
        ? t('review.verdict.none_in_region').replace('{region}', params.region)
        : t(`review.verdict.${found.verdict}`);
      const verdict = `${said} · ${t('review.shareable')}: ${fmtNumber(found.shareable)}`
        + ` · ${t('review.shareable_hours')}: ${fmtNumber(found.shareable_hours)}`
        + ` · ${t('review.fully_used')}: ${fmtNumber(found.fully_used)}`;
      result.replaceChildren(
        el('p', { class: 'verdict', dataset: { verdict: found.verdict }, text: verdict }),
        exportButtons(path, params, ctx.fail, 'review'),
        table(COLUMNS, found.items, 'review'));
    }, result, ctx, signal);
    result.dataset.review = 'done'; // answered, refused or failed
  });
  return card;
}
