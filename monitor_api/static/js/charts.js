// Chart.js (vendored UMD build, window.Chart) wrappers: bar/line comparisons, a state
// timeline of floating bars, and a power series on a numeric time axis (no date adapter).

import { startOfDay } from './clock.js';
import { el } from './dom.js';
import { fmtNumber, fmtPercent, fmtTick, fmtTime, inLanguage, t } from './i18n.js';

export const STATES = ['running', 'idle', 'off', 'fault', 'maintenance', 'offline'];
export const STATE_COLOURS = { // as app.css's tiles
  running: '#2f855a', idle: '#a16207', off: '#64748b', fault: '#c53030',
  maintenance: '#6b46c1', offline: '#2d3748',
};
const BLUE = '#2b6cb0';
const ORANGE = '#dd6b20';
const TEAL = '#319795';

const BASE_OPTIONS = {
  responsive: true,
  maintainAspectRatio: false,
  animation: false,
  plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
};

const MINUTE = 60e3;
const HOUR = 3600e3;
const DAY = 24 * HOUR;
// minutes for a short range (half an hour gets a tick every 5 minutes), hours, then days
const STEPS = [MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY];

/** Tick positions on whole steps (minutes, hours, days) of Shanghai's clock counted from
 * midnight, at most ``count`` of them; beyond ``count`` weeks, every so many whole days, so
 * that each tick is a date, not an odd hour of one. */
export function timeTicks(lo, hi, count = 7) {
  const step = STEPS.find((s) => (hi - lo) / s <= count) ?? Math.ceil((hi - lo) / count / DAY) * DAY;
  const midnight = startOfDay(lo);
  const first = step >= 24 * HOUR ? midnight : midnight + Math.floor((lo - midnight) / step) * step;
  const ticks = [];
  for (let v = first; v <= hi; v += step) if (v >= lo) ticks.push({ value: v });
  return ticks;
}

function timeAxis(lo, hi) {
  const long = hi - lo > 2 * 86400e3;
  return {
    type: 'linear', min: lo, max: hi,
    afterBuildTicks: (axis) => { axis.ticks = timeTicks(lo, hi); },
    // the first tick names its day too, so that a day's range says which day it begins on
    ticks: { autoSkip: true, maxRotation: 0, callback: (v, i) => fmtTick(v, long || i === 0) },
  };
}

/**
 * A canvas in a sized box; the chart is created once the box is in the document. ``name``
 * identifies it (data-chart), ``label`` is what screen readers announce (a translated string).
 */
export function chartBox(name, label) {
  const canvas = el('canvas', { role: 'img', 'aria-label': label, dataset: { chart: name } });
  return { box: el('div', { class: 'chart' }, canvas), canvas };
}

/** A page's teardown: abort its requests, then free its charts (each holds resize listeners). */
export function teardown(root, stop) {
  return () => {
    stop.abort();
    for (const canvas of root.querySelectorAll('canvas')) Chart.getChart(canvas)?.destroy();
  };
}

function make(canvas, config) {
  Chart.getChart(canvas)?.destroy();
  return new Chart(canvas, config);
}

/** ``text`` cut to ``most`` characters with an ellipsis: axis labels that fit, the tooltip
 * telling the whole name. */
const shortened = (text, most) => (text.length > most ? `${text.slice(0, most - 1)}…` : text);

/** How many characters a category axis ``scale`` has room for under each of its labels
 * (about 7 px a character beside the y axes' 100 px), and never fewer than 10, which a
 * label turned aslant takes on a phone. */
const labelRoom = (scale) => Math.max(10,
  Math.floor((scale.chart.width - 100) / Math.max(scale.chart.data.labels.length, 1) / 7));

/** Hours per group as bars, openness ratio as a line on its own axis. */
export function hoursChart(canvas, items) {
  return make(canvas, {
    type: 'bar',
    data: {
      labels: items.map((i) => inLanguage(i.name, i.name_en) || i.key),
      datasets: [
        // order: bars first, the line over them (a lower order is drawn later)
        { label: t('util.effective'), data: items.map((i) => i.effective_hours),
          backgroundColor: BLUE, yAxisID: 'y', order: 2 },
        { label: t('util.external'), data: items.map((i) => i.external_hours),
          backgroundColor: ORANGE, yAxisID: 'y', order: 2 },
        { type: 'line', label: t('util.openness'),
          data: items.map((i) => (i.openness_ratio === null ? null : i.openness_ratio)),
          borderColor: TEAL, backgroundColor: TEAL, yAxisID: 'ratio', order: 1 },
      ],
    },
    options: {
      ...BASE_OPTIONS,
      scales: {
        x: { ticks: { callback(value) { return shortened(this.getLabelForValue(value), labelRoom(this)); } } },
        y: { beginAtZero: true, title: { display: true, text: t('common.hours') } },
        ratio: { position: 'right', beginAtZero: true, suggestedMax: 0.5,
          title: { display: true, text: t('util.openness') },
          grid: { drawOnChartArea: false }, ticks: { callback: (v) => fmtPercent(v) } },
      },
      plugins: {
        ...BASE_OPTIONS.plugins,
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${
          c.dataset.yAxisID === 'ratio' ? fmtPercent(c.raw) : fmtNumber(c.raw)}` } },
      },
    },
  });
}

export function countChart(canvas, labels, counts, label) {
  return make(canvas, {
    type: 'bar',
    data: { labels, datasets: [{ label, data: counts, backgroundColor: BLUE }] },
    options: { ...BASE_OPTIONS, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
}

/** Merged state intervals as floating bars on one row, one dataset (legend entry) per state.
 * ``beside``: the chart of the same times drawn before it (powerChart); the timeline keeps a
 * margin as wide as its y axis, so that a time is at one x in both, whatever the screen. */
export function timelineChart(canvas, intervals, lo, hi, beside) {
  const datasets = STATES.map((state) => ({
    label: t(`state.${state}`),
    data: intervals.filter((i) => i.state === state)
      .map((i) => ({ x: [Date.parse(i.start), Date.parse(i.end)], y: 0 })),
    backgroundColor: STATE_COLOURS[state],
    grouped: false,
    barPercentage: 1,
    categoryPercentage: 0.9,
  })).filter((d) => d.data.length > 0);
  return make(canvas, {
    type: 'bar',
    data: { labels: [t('detail.timeline')], datasets },
    options: {
      ...BASE_OPTIONS,
      indexAxis: 'y',
      scales: {
        x: timeAxis(lo, hi),
        y: { ticks: { display: false }, grid: { display: false }, border: { display: false },
          afterFit: (scale) => { scale.width = beside.scales.y.width; } },
      },
      plugins: {
        ...BASE_OPTIONS.plugins,
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmtTime(c.raw.x[0])} – ${
          fmtTime(c.raw.x[1])}` } },
      },
    },
  });
}

export function powerChart(canvas, points, lo, hi) {
  const series = (key) => points.map((p) => ({ x: Date.parse(p.ts), y: p[key] }));
  return make(canvas, {
    type: 'line',
    data: {
      datasets: [
        { label: t('detail.power_avg'), data: series('avg_w'), borderColor: BLUE,
          backgroundColor: BLUE, pointRadius: 0, borderWidth: 2 },
        { label: t('detail.power_max'), data: series('max_w'), borderColor: ORANGE,
          backgroundColor: ORANGE, pointRadius: 0, borderWidth: 1, borderDash: [4, 3] },
      ],
    },
    options: {
      ...BASE_OPTIONS,
      parsing: false,
      scales: {
        x: timeAxis(lo, hi),
        y: { beginAtZero: true, title: { display: true, text: 'W' } },
      },
    },
  });
}
