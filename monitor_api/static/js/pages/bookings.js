// Bookings: the ones each role may see (users their own, lab managers their institution's,
// admins and evaluators all) from a week back on, the actions each role may take on each, and
// for registered users the request form. The API decides; a refusal shows its message.

import { getAll, getJson, postJson } from '../api.js';
import { dateTimeInput, instant, isoTime, readDateTimeInput, wallClock } from '../clock.js';
import { el, named } from '../dom.js';
import { fmtTime, t, zoneNote } from '../i18n.js';
import { answered, confirmed, showDone, showProblem, showRefusal } from '../notice.js';
import { moreNote, section, table } from '../table.js';

const DAY = 86400e3;
const HOUR = 3600e3;
const MAX_BOOKING = 31 * DAY; // the API's limit, said here in the page's language
const SHOWN = 1000;
const STATUSES = ['requested', 'approved', 'completed', 'rejected', 'cancelled', 'void'];
const KINDS = ['assisted', 'sample', 'self'];
const PURPOSES = ['research', 'development', 'teaching', 'other'];
const MANAGERS = ['admin', 'lab_manager'];

/** What is asked before ``action``, which the dashboard cannot undo: the body to send with it
 * (undefined for none), or null when the person keeps the booking as it is. A rejection, and
 * a manager's cancellation, ask for the reason, which its user reads beside its status (the
 * booking's note). */
function asked(action, manager) {
  const why = action === 'reject' ? 'book.confirm_reject'
    : action === 'cancel' && manager ? 'book.confirm_cancel_managed' : null;
  if (why) {
    const reason = answered(why);
    return reason === null ? null : { note: reason.trim() };
  }
  if (action === 'cancel') return confirmed('book.confirm_cancel') ? undefined : null;
  return undefined;
}

/** What ``me`` may do with ``booking`` now, as [action, label] pairs (the API's rules). */
function actions(me, booking) {
  if (MANAGERS.includes(me.role)) {
    if (booking.status === 'requested') return [['approve', 'book.approve'], ['reject', 'book.reject']];
    if (booking.status === 'approved') {
      const begun = Date.parse(booking.start) <= Date.now();
      return [...(begun ? [['complete', 'book.complete']] : []), ['cancel', 'book.cancel']];
    }
    if (booking.status === 'void') return [['cancel', 'book.cancel']]; // excuses the no-show
    return [];
  }
  const cancellable = booking.status === 'requested'
    || (booking.status === 'approved' && Date.parse(booking.start) > Date.now());
  return me.role === 'user' && cancellable ? [['cancel', 'book.cancel']] : [];
}

function choice(id, label, values, prefix, selected) {
  return el('label', {}, `${t(label)} `, el('select', { id },
    values.map((v) => el('option', { value: v, text: t(`${prefix}.${v}`), selected: v === selected }))));
}

export function render(root, ctx) {
  const stop = new AbortController();
  const message = el('div', { class: 'message', 'aria-live': 'polite' });
  const list = el('div', { class: 'report', dataset: { loaded: 'false' } });
  const status = el('select', { id: 'booking-status' },
    el('option', { value: '', text: t('common.all') }),
    STATUSES.map((s) => el('option', { value: s, text: t(`book.status.${s}`) })));
  status.addEventListener('change', () => load());

  const refused = (err) => showRefusal(message, err, ctx);
  const done = (text) => showDone(message, text);

  /** Show what ``say`` fills a box with right under booking ``id``, where its button was
   * pressed, not in the message box far above on a phone; in that box, brought into sight,
   * when the list (filtered by status) no longer holds it. */
  function sayBeside(id, say) {
    const row = list.querySelector(`tr[data-id="${id}"]`);
    const box = row ? el('td', { colspan: row.cells.length }) : message;
    row?.after(el('tr', { class: 'row-notice' }, box));
    say(box);
    box.scrollIntoView({ block: 'nearest' });
  }

  const buttons = (booking) => {
    const allowed = actions(ctx.me, booking);
    if (!allowed.length) return null;
    return el('div', { class: 'row-actions' }, allowed.map(([action, label]) => el('button', {
      type: 'button', dataset: { action }, text: t(label),
      onclick: async (event) => {
        const body = asked(action, MANAGERS.includes(ctx.me.role));
        if (body === null) return;
        event.currentTarget.disabled = true;
        message.replaceChildren(); // what was said of another booking
        let say;
        try {
          const now = await postJson(`bookings/${booking.id}/${action}`, body,
            { signal: stop.signal });
          say = (box) => showDone(box,
            `${t('book.booking')} #${booking.id}: ${t(`book.status.${now.status}`)}`);
        } catch (err) {
          if (stop.signal.aborted) return;
          say = (box) => showRefusal(box, err, ctx);
        }
        await load();
        sayBeside(booking.id, say);
      },
    })));
  };
  // status and actions next to the instrument: in sight on a phone without scrolling
  const columns = [
    { key: 'id', label: 'book.id', short: true },
    { key: 'instrument_id', label: 'book.instrument', format: (v, row) => [named(row.instrument_name, v),
      el('span', { class: 'booking-unit', title: row.institution_id, text: row.institution_name })] },
    { key: 'status', label: 'book.status', format: (v, row) => [t(`book.status.${v}`), row.note
      ? el('span', { class: 'booking-note', text: `${t('book.note')}: ${row.note}` }) : null] },
    { key: 'actions', label: 'book.actions', format: (_, row) => buttons(row) },
    { key: 'start', label: 'common.start', format: (v) => fmtTime(v) },
    { key: 'end', label: 'common.end', format: (v) => fmtTime(v) },
    { key: 'user_id', label: 'book.user', format: (v, row) => named(row.user_name, v) },
    { key: 'kind', label: 'book.kind', format: (v) => t(`book.kind.${v}`) },
  ];

  async function load() {
    list.dataset.loaded = 'false';
    try {
      const page = await getJson('bookings', {
        status: status.value, ends_after: new Date(Date.now() - 7 * DAY).toISOString(), limit: SHOWN,
      }, { signal: stop.signal });
      list.replaceChildren(table(columns, page.items, 'bookings'));
      list.append(...moreNote(page, 'book.more'));
      list.dataset.loaded = 'true';
    } catch (err) {
      if (!stop.signal.aborted) ctx.fail(err, list);
    }
  }

  function requestForm() {
    // none chosen at first: a request sent without choosing books nothing, not the first one
    const instrument = el('select', { id: 'book-instrument' },
      el('option', { value: '', text: t('book.choose_instrument') }));
    // every instrument (a province registers thousands), each with its unit
    getAll('instruments', {}, { signal: stop.signal })
      .then((items) => instrument.append(...items.map((i) => el('option', { value: i.id,
        text: `${named(i.name, i.id)} · ${i.institution_name}` }))))
      .catch((err) => { if (!stop.signal.aborted) ctx.fail(err, message); });
    const tomorrow = wallClock(Date.now() + DAY); // the inputs hold Shanghai's clock (clock.js)
    const nine = instant(tomorrow.year, tomorrow.month, tomorrow.day, 9);
    const start = el('input', { type: 'datetime-local', id: 'book-start', required: true, value: dateTimeInput(nine) });
    const end = el('input', { type: 'datetime-local', id: 'book-end', required: true, value: dateTimeInput(nine + 2 * HOUR) });
    const form = el('form', { class: 'filters booking-form' },
      el('label', {}, `${t('book.instrument')} `, instrument),
      choice('book-kind', 'book.kind', KINDS, 'book.kind', 'assisted'),
      choice('book-purpose', 'book.purpose', PURPOSES, 'book.purpose', 'research'),
      el('label', {}, `${t('common.start')} `, start), el('label', {}, `${t('common.end')} `, end),
      zoneNote(),
      el('button', { type: 'submit', class: 'primary', text: t('book.request') }));
    ctx.keep(...form.querySelectorAll('select, input')); // what was typed, after a language switch
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const lo = readDateTimeInput(start.value);
      const hi = readDateTimeInput(end.value);
      const wrong = !instrument.value ? ['book.no_instrument', 'instrument']
        : !(hi > lo) ? ['common.bad_range', 'range']
          : lo <= Date.now() ? ['book.in_past', 'range']
            : hi - lo > MAX_BOOKING ? ['book.too_long', 'range'] : null;
      if (wrong) { // said here, in the page's language, before the API would refuse it
        showProblem(message, ...wrong);
        return;
      }
      const submit = form.querySelector('button[type="submit"]');
      submit.disabled = true; // one request per click, however fast the clicks
      try {
        const made = await postJson('bookings', {
          instrument_id: instrument.value, kind: form.querySelector('#book-kind').value,
          purpose: form.querySelector('#book-purpose').value,
          start: isoTime(lo), end: isoTime(hi),
        }, { signal: stop.signal });
        done(`${t('book.requested_ok')}: #${made.id} (${t(`book.status.${made.status}`)})`);
        await load();
      } catch (err) {
        if (!stop.signal.aborted) refused(err);
      } finally {
        submit.disabled = false;
      }
    });
    return section('book.new', 'request', form);
  }

  root.append(el('div', { class: 'page-head' }, el('h1', { text: t('book.title') })));
  if (ctx.me.role === 'user') root.append(requestForm());
  root.append(message, el('form', { class: 'filters', onsubmit: (e) => e.preventDefault() },
    el('label', {}, `${t('book.status')} `, status), el('span', { class: 'muted', text: t('book.since') })), list);
  ctx.keep(status);
  load();
  return () => stop.abort();
}
