// China Standard Time for every time the dashboard shows or reads, whatever the browser's
// own zone: the platform's days (metrics.md) and its exports are in Asia/Shanghai, and a lab's
// users read the same clock on a laptop set to UTC or abroad.
//
// Asia/Shanghai has kept UTC+8 without daylight saving since 1991, before any data this
// platform holds, so a fixed offset is exact and needs no time-zone database. The Date
// objects below hold instants shifted by that offset, read with the getUTC* methods only.

export const OFFSET = '+08:00';
const SHIFT = 8 * 3600e3;
const DAY = 86400e3;

const pad = (n) => String(n).padStart(2, '0');

/** Shanghai's wall clock at an instant (ms, ISO text or Date): year, month (1-12), day,
 * hours, minutes. */
export function wallClock(value) {
  const d = new Date(new Date(value).getTime() + SHIFT);
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(),
    hours: d.getUTCHours(), minutes: d.getUTCMinutes() };
}

/** The instant (ms) at which Shanghai's clocks show the given day and time (month 1-12). */
export function instant(year, month, day, hours = 0, minutes = 0) {
  return Date.UTC(year, month - 1, day, hours, minutes) - SHIFT;
}

/** The instant (ms) of midnight in Shanghai that begins the day of ``ms``. */
export function startOfDay(ms) {
  return Math.floor((ms + SHIFT) / DAY) * DAY - SHIFT;
}

/** The year in Shanghai now. */
export const thisYear = () => wallClock(Date.now()).year;

/** The day in Shanghai at an instant (now by default) as a date input wants it: 2026-11-30. */
export function dateInput(value = Date.now()) {
  const c = wallClock(value);
  return `${c.year}-${pad(c.month)}-${pad(c.day)}`;
}

/** An instant as a datetime-local input wants it, on Shanghai's clock: 2026-11-30T09:00. */
export function dateTimeInput(value) {
  const c = wallClock(value);
  return `${dateInput(value)}T${pad(c.hours)}:${pad(c.minutes)}`;
}

/** The instant (ms) a datetime-local input's value means, read on Shanghai's clock; NaN when
 * empty or incomplete. */
export const readDateTimeInput = (text) => (text ? Date.parse(`${text}${OFFSET}`) : NaN);

/** An instant in ISO 8601 with Shanghai's offset, as the exports write it:
 * 2026-11-30T09:00:00+08:00. */
export function isoTime(ms) {
  return `${new Date(ms + SHIFT).toISOString().slice(0, 19)}${OFFSET}`;
}
