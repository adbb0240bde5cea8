// The selected time range lives in the URL: `?range=7d` for a preset (relative to now), or
// `?from=…&to=…` (RFC 3339) for a custom range or a zoom. The default is the last 30 days.

export const PRESETS = [
  { key: "24h", label: "24h", seconds: 24 * 3600 },
  { key: "7d", label: "7d", seconds: 7 * 86400 },
  { key: "30d", label: "30d", seconds: 30 * 86400 },
  { key: "90d", label: "90d", seconds: 90 * 86400 },
];
export const DEFAULT_PRESET = "30d";

// Presets end at the next whole minute, so reloading within a minute asks the same range
// (and hits the result cache).
function presetRange(preset, now = Date.now()) {
  const to = Math.ceil(now / 60_000) * 60_000;
  return { from: new Date(to - preset.seconds * 1000), to: new Date(to) };
}

export function rangeFromParams(params) {
  const from = params.get("from");
  const to = params.get("to");
  if (from && to) {
    const start = new Date(from);
    const end = new Date(to);
    if (!Number.isNaN(start.getTime()) && !Number.isNaN(end.getTime()) && end > start) {
      return { preset: null, from: start, to: end };
    }
  }
  const preset = PRESETS.find((p) => p.key === params.get("range")) ??
    PRESETS.find((p) => p.key === DEFAULT_PRESET);
  return { preset: preset.key, ...presetRange(preset) };
}

// Writes a range into `params`; `range` is either a preset key or `{from, to}` dates.
export function setRangeParams(params, range) {
  params.delete("range");
  params.delete("from");
  params.delete("to");
  if (typeof range === "string") {
    if (range !== DEFAULT_PRESET) params.set("range", range);
  } else {
    params.set("from", toIsoSeconds(range.from));
    params.set("to", toIsoSeconds(range.to));
  }
}

export const toIsoSeconds = (date) => date.toISOString().replace(/\.\d{3}Z$/, "Z");

export const rangeInput = (range) => ({ from: toIsoSeconds(range.from), to: toIsoSeconds(range.to) });

// `<input type="datetime-local">` values are local time without a zone.
export function toLocalInput(date) {
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}
