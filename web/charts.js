// Charts, all drawn by uPlot (vendor/uplot): a few tens of kB, canvas-based, fast with many
// instances (one sparkline per table row) and with a built-in drag selection for zooming.

import uPlot from "./vendor/uplot/uPlot.esm.js";

const ACCENT = "#4f46e5";
const ERROR = "#dc2626";
const MUTED = "#94a3b8";
const bars = uPlot.paths.bars({ size: [0.85, 80], align: 1 });

const axis = { stroke: "#64748b", grid: { stroke: "#e2e8f0", width: 1 }, ticks: { show: false } };

function widthOf(el) {
  return Math.max(240, Math.floor(el.getBoundingClientRect().width));
}

// Charts follow their container's width when the window is resized.
const sized = new Map();
let resizeQueued = false;
window.addEventListener("resize", () => {
  if (resizeQueued) return;
  resizeQueued = true;
  requestAnimationFrame(() => {
    resizeQueued = false;
    for (const [chart, el] of sized) {
      if (!el.isConnected) { chart.destroy(); sized.delete(chart); continue; }
      chart.setSize({ width: widthOf(el), height: chart.height });
    }
  });
});

/**
 * The activity histogram: traces per bucket, errored traces over them, active users as a
 * line. Dragging across it calls `onZoom(from, to)` with the dates the selection covers,
 * widened to whole buckets.
 */
export function activityHistogram(el, histogram, range, onZoom) {
  const step = histogram.bucketSeconds;
  const xs = histogram.buckets.map((b) => Date.parse(b.start) / 1000);
  const data = [
    xs,
    histogram.buckets.map((b) => b.traces),
    histogram.buckets.map((b) => b.erroredTraces),
    histogram.buckets.map((b) => b.activeUsers),
  ];
  const chart = new uPlot({
    width: widthOf(el),
    height: 200,
    cursor: { drag: { x: true, y: false, setScale: false } },
    select: { show: true },
    legend: { show: true, live: true },
    scales: {
      x: { time: true, range: () => [range.from.getTime() / 1000, range.to.getTime() / 1000] },
      users: { range: (_u, _min, max) => [0, Math.max(1, max)] },
    },
    axes: [
      { ...axis },
      { ...axis, size: 48 },
      { ...axis, scale: "users", side: 1, grid: { show: false }, size: 40 },
    ],
    series: [
      {},
      { label: "Traces", stroke: ACCENT, fill: "rgba(79,70,229,0.35)", paths: bars, points: { show: false } },
      { label: "Errored traces", stroke: ERROR, fill: "rgba(220,38,38,0.55)", paths: bars, points: { show: false } },
      { label: "Active users", stroke: "#0f766e", width: 2, scale: "users", points: { show: false } },
    ],
    hooks: {
      setSelect: [
        (u) => {
          if (u.select.width < 4) return;
          const left = u.posToVal(u.select.left, "x");
          const right = u.posToVal(u.select.left + u.select.width, "x");
          // Whole buckets, inside the current range: the zoomed figures then match the bars.
          const fromSeconds = Math.max(range.from.getTime() / 1000, Math.floor(left / step) * step);
          const toSeconds = Math.min(range.to.getTime() / 1000, Math.ceil(right / step) * step);
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          if (toSeconds > fromSeconds) onZoom(new Date(fromSeconds * 1000), new Date(toSeconds * 1000));
        },
      ],
    },
  }, data, el);
  sized.set(chart, el);
  return chart;
}

/** A user's daily activity: traces and errored traces per UTC day. */
export function dailyActivity(el, activity) {
  const data = [
    activity.map((d) => Date.parse(`${d.date}T00:00:00Z`) / 1000),
    activity.map((d) => d.traces),
    activity.map((d) => d.erroredTraces),
  ];
  const chart = new uPlot({
    width: widthOf(el),
    height: 180,
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [{ ...axis }, { ...axis, size: 40 }],
    series: [
      {},
      { label: "Traces", stroke: ACCENT, fill: "rgba(79,70,229,0.35)", paths: bars, points: { show: false } },
      { label: "Errored traces", stroke: ERROR, fill: "rgba(220,38,38,0.55)", paths: bars, points: { show: false } },
    ],
  }, data, el);
  sized.set(chart, el);
  return chart;
}

/** A row's trend: trace counts in equal slices of the range, as a small line. */
export function sparkline(el, values) {
  return new uPlot({
    width: 96,
    height: 24,
    pxAlign: false,
    cursor: { show: false },
    legend: { show: false },
    select: { show: false },
    scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
    axes: [{ show: false }, { show: false }],
    series: [{}, { stroke: values.some((v) => v > 0) ? ACCENT : MUTED, width: 1.5, fill: "rgba(79,70,229,0.12)", points: { show: false } }],
  }, [values.map((_, i) => i), values], el);
}
