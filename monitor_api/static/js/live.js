// Following the live status (/status/stream), as the board and an instrument's page both do:
// the subscription, its reconnection, and the mark that says whether the page is live.

import { streamEvents } from './api.js';
import { el, named, sleep } from './dom.js';
import { t } from './i18n.js';

/** How often a page reads the power anew: power readings alone send no events. */
export const POWER_REFRESH_MS = 60_000;
const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 30_000;

/** A user by name and id, marked when ``booked``: taken from a booking because the gateway
 * names nobody (the board's entries, the session log's rows). */
export const userNamed = (name, id, booked) => named(name, id)
  + (booked ? ` (${t('board.booked')})` : '');

/** Who is at the instrument of status entry ``s``, which names a user ("User: name (id)"). */
export const whoIsAt = (s) => `${t('board.user')}: ${userNamed(s.user_name, s.user_id, s.user_booked)}`;

/** The "Live" / "Reconnecting" mark of a page head: ``node``, and ``set(on)``. */
export function liveMark() {
  const node = el('span', { class: 'live' });
  const set = (on) => {
    node.dataset.live = on ? 'on' : 'off';
    node.textContent = on ? t('board.live') : t('board.reconnecting');
  };
  set(false);
  return { node, set };
}

/**
 * Follow the stream of ``params`` until ``signal`` aborts. The stream is opened first and
 * ``onSnapshot`` (the page's load) awaited once the server has taken its snapshot, so no
 * change falls between the two; ``onItem(item)`` then runs per board item that changed.
 * A broken stream shows on ``mark`` and is opened again with backoff, the page loaded anew;
 * a refusal (a lost session, an instrument the token may not see) ends it with
 * ``onRefused(err)``. Until a load succeeds, each failed attempt goes to ``onFailed(err)``:
 * a page with nothing to show says why, not "loading" while it retries.
 */
export async function followStatus(params, {
  signal, mark, onSnapshot, onItem, onRefused, onFailed,
}) {
  let delay = FIRST_RETRY_MS;
  let loaded = false;
  while (!signal.aborted) {
    try {
      await streamEvents('status/stream', params, {
        signal,
        onFirst: async () => {
          await onSnapshot();
          loaded = true;
          mark.set(true);
          delay = FIRST_RETRY_MS;
        },
        onEvent: (type, data) => { if (type === 'status') onItem(JSON.parse(data)); },
      });
    } catch (err) {
      if (signal.aborted) return;
      if (err.status >= 400 && err.status < 500) { onRefused(err); return; }
      if (!loaded) onFailed(err);
    }
    mark.set(false);
    await sleep(delay, signal);
    delay = Math.min(delay * 2, LAST_RETRY_MS);
  }
}

/** Run ``refresh`` every ``ms`` until ``signal`` aborts. A round that fails is left to the
 * next: the stream is what reports a lost connection. */
export async function every(ms, signal, refresh) {
  while (!signal.aborted) {
    await sleep(ms, signal);
    if (signal.aborted) return;
    try {
      await refresh();
    } catch {
      // the next round tries again
    }
  }
}
