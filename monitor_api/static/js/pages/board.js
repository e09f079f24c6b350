// Live status board: one tile per instrument coloured by state, kept current by the
// /status/stream server-sent events (no reload). Lab managers see their institution only.
// Power readings alone send no events; the board takes them once a minute instead.

import { getJson } from '../api.js';
import { categoryList, namedCodes } from '../categories.js';
import { STATES } from '../charts.js';
import { el } from '../dom.js';
import { fmtNumber, fmtTime, t } from '../i18n.js';
import { POWER_REFRESH_MS, every, followStatus, liveMark, whoIsAt } from '../live.js';

export function render(root, ctx) {
  const stop = new AbortController();
  const scope = ctx.me.role === 'lab_manager' ? { institution_id: ctx.me.institution_id } : {};
  const tiles = new Map(); // instrument id -> { item, node }
  let loaded = false;

  const live = liveMark();
  const stateFilter = el('select', { id: 'state-filter', 'aria-label': t('board.filter_state') },
    el('option', { value: '', text: t('common.all') }),
    STATES.map((s) => el('option', { value: s, text: t(`state.${s}`) })));
  // a code or a class's name: letters and digits (a phone's keyboard, not a number pad)
  const categoryFilter = el('input', { id: 'category-filter', type: 'search', maxlength: 100,
    placeholder: '0102', list: 'category-list' });
  let codes = []; // the category codes the filter names, each a prefix (categories.js)
  const summary = el('div', { class: 'summary' });
  const grid = el('div', { class: 'tiles', dataset: { loaded: 'false' } },
    el('p', { class: 'muted', text: t('common.loading') }));
  const empty = el('p', { class: 'muted', dataset: { empty: 'board' }, text: t('board.no_instruments') });
  const noneShown = el('p', { class: 'muted', id: 'none-shown', hidden: true,
    text: t('board.none_match') });
  const scopeText = scope.institution_id ? ctx.me.institution_name ?? scope.institution_id
    : t('board.scope_all');

  root.append(
    el('div', { class: 'page-head' },
      el('h1', { 'data-i18n': 'board.title', text: t('board.title') }), live.node),
    el('div', { class: 'filters' },
      el('span', { class: 'scope-label' }, `${t('board.scope')}: `,
        el('strong', { dataset: { scope: scope.institution_id ?? 'all' }, text: scopeText })),
      el('label', {}, `${t('board.filter_state')} `, stateFilter),
      el('label', {}, `${t('board.filter_category')} `, categoryFilter,
        categoryList('category-list'))),
    summary, noneShown, grid);

  /** In the class typed, if any: what the counts above the tiles count. */
  const inCategory = (item) => !categoryFilter.value.trim()
    || codes.some((code) => (item.category_code ?? '').startsWith(code));

  function visible(item) {
    const state = stateFilter.value;
    return (!state || item.state === state) && inCategory(item);
  }

  function fillTile(node, item) {
    node.dataset.state = item.state;
    node.hidden = !visible(item);
    const power = item.power_w !== null && item.power_w !== undefined
      ? `${t('board.power')} ${fmtNumber(item.power_w, 0)} W` : null;
    // the time in one piece: a tile's text may wrap anywhere (long ids), a date never
    const since = item.since
      ? [`${t('board.since')} `, el('span', { class: 'when', text: fmtTime(item.since) })] : null;
    node.replaceChildren(...[
      el('span', { class: 'tile-state', text: t(`state.${item.state}`) }),
      el('span', { class: 'tile-name', text: item.name }),
      el('span', { class: 'tile-id', title: item.institution_id,
        text: `${item.instrument_id} · ${item.institution_name}` }),
      el('span', { class: 'tile-meta' }, power, power && since ? ' · ' : null, since),
      item.user_id ? el('span', { class: 'tile-user', text: whoIsAt(item) }) : null,
      // staff see what registered users do not: an instrument not in the catalogue yet
      item.listed === false ? el('span', { class: 'tile-unlisted', text: t('board.unlisted') }) : null,
    ].filter(Boolean));
  }

  function apply(item) {
    let entry = tiles.get(item.instrument_id);
    if (!entry) {
      const node = el('a', { class: 'tile', href: `#/instrument/${encodeURIComponent(item.instrument_id)}`,
        dataset: { instrument: item.instrument_id } });
      entry = { item, node };
      tiles.set(item.instrument_id, entry);
      grid.append(node);
    }
    entry.item = item;
    fillTile(entry.node, item);
  }

  function refreshSummary() {
    empty.hidden = tiles.size > 0; // an instrument the stream brought fills an empty board
    noneShown.hidden = !tiles.size || [...tiles.values()].some(({ node }) => !node.hidden);
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    const counted = [...tiles.values()].filter(({ item }) => inCategory(item));
    for (const { item } of counted) counts[item.state] = (counts[item.state] ?? 0) + 1;
    summary.replaceChildren(
      el('span', { class: 'count-total' }, `${counted.length} ${t('board.instruments')}`),
      ...STATES.map((s) => el('button', {
        type: 'button', class: 'chip', dataset: { state: s, count: counts[s] },
        'aria-pressed': String(stateFilter.value === s),
        onclick: () => { stateFilter.value = stateFilter.value === s ? '' : s; refilter(); },
      }, `${t(`state.${s}`)} ${counts[s]}`)));
  }

  function refilter() {
    for (const { item, node } of tiles.values()) node.hidden = !visible(item);
    refreshSummary();
  }
  /** Read the category filter's text: names are looked up (without them, codes only). */
  async function filterCategory() {
    const text = categoryFilter.value;
    const found = await namedCodes(text, { part: true }).catch(() => []);
    if (text !== categoryFilter.value) return; // typed on meanwhile: the later text decides
    codes = found;
    refilter();
  }
  stateFilter.addEventListener('change', refilter);
  categoryFilter.addEventListener('input', filterCategory);
  ctx.keep(stateFilter, categoryFilter);
  if (categoryFilter.value) filterCategory();

  const fetchBoard = () => getJson('status', { ...scope, limit: 20000 }, { signal: stop.signal });

  /** The board as ``/status`` has it: drawn whole each time, so that after a reconnect it
   * holds no tile of an instrument that left it meanwhile, as a first load would not. Each
   * entry names its unit, a province's thousands too. */
  async function loadBoard() {
    const board = await fetchBoard();
    tiles.clear();
    grid.replaceChildren(empty);
    for (const item of board.items) apply(item);
    loaded = true;
    grid.dataset.loaded = 'true';
    refreshSummary();
  }

  // Only the power of a tile whose state the board agrees with: a state the stream brought
  // in the meantime is newer than the board's.
  async function refreshPower() {
    if (!loaded) return;
    const board = await fetchBoard();
    for (const fresh of board.items) {
      const entry = tiles.get(fresh.instrument_id);
      if (entry && entry.item.state === fresh.state && entry.item.power_w !== fresh.power_w) {
        apply({ ...entry.item, power_w: fresh.power_w });
      }
    }
  }
  followStatus(scope, {
    signal: stop.signal, mark: live, onSnapshot: loadBoard,
    onItem: (item) => { apply(item); refreshSummary(); },
    onRefused: (err) => ctx.fail(err, grid),
    onFailed: (err) => ctx.fail(err, grid),
  });
  every(POWER_REFRESH_MS, stop.signal, refreshPower);
  return () => stop.abort();
}
