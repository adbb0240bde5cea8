// Display formats. One locale everywhere, so what the page shows is predictable (and the
// browser tests can compare it with the API's numbers).

const LOCALE = "en-US";
const integer = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(LOCALE, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat(LOCALE, { notation: "compact", maximumFractionDigits: 1 });

export const formatInteger = (n) => integer.format(Number(n));
export const formatDecimal = (n) => decimal.format(Number(n));
export const formatPercent = (share) => `${(Number(share) * 100).toFixed(1)}%`;

// BigInt scalars arrive as numbers below 2^53, else as decimal strings.
export function formatTokens(value) {
  const n = Number(value);
  return n >= 100_000 ? compact.format(n) : integer.format(n);
}

export function formatCost(usd) {
  const n = Number(usd);
  if (n === 0) return "$0.00";
  if (Math.abs(n) < 0.01) return `$${n.toFixed(4)}`;
  return `$${decimal.format(n)}`;
}

export function formatDuration(ms) {
  const n = Number(ms);
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60_000) return `${(n / 1000).toFixed(1)} s`;
  return `${(n / 60_000).toFixed(1)} min`;
}

const dateTime = new Intl.DateTimeFormat(LOCALE, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false,
});

export const formatDateTime = (iso) => dateTime.format(new Date(iso));

export function formatRelative(iso, now = Date.now()) {
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} d ago`;
}
