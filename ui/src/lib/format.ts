// Numbers for people: short in the page, exact in a tooltip.
// Sizes are decimal (1 GB = 10^9 bytes), as Finder counts them.

const exact = new Intl.NumberFormat("en-US");

/** "3.2 GB", "76.3 MB", "512.0 KB", "12 B". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "—";
  if (bytes < 1e3) return `${Math.round(bytes)} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1e3;
  let unit = 0;
  // 999,999 bytes is "1.0 MB", not "1000.0 KB".
  while (Number(value.toFixed(1)) >= 1000 && unit < units.length - 1) {
    value /= 1e3;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** "1,234,567 bytes", for a title tooltip. */
export function exactBytes(bytes: number): string {
  return `${exact.format(bytes)} bytes`;
}

/** "12.3 MB/s". */
export function formatSpeed(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** "45 s", "3 min", "1 h 20 min". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest === 0 ? `${hours} h` : `${hours} h ${rest} min`;
}

/** "950", "12.3k", "4.1M". */
export function formatCount(n: number): string {
  if (n >= 1e6) return `${trim(n / 1e6)}M`;
  if (n >= 1e3) return `${trim(n / 1e3)}k`;
  return String(n);
}

/** "12,345", for a title tooltip. */
export function exactCount(n: number): string {
  return exact.format(n);
}

/** "135M", "7.6B" parameters. */
export function formatParameters(n: number): string {
  if (n >= 1e9) return `${trim(n / 1e9)}B`;
  if (n >= 1e6) return `${trim(n / 1e6)}M`;
  if (n >= 1e3) return `${trim(n / 1e3)}K`;
  return String(n);
}

function trim(x: number): string {
  return x >= 100 ? x.toFixed(0) : x.toFixed(1).replace(/\.0$/, "");
}

/** "today", "yesterday", "5 days ago", "3 months ago", "2 years ago". */
export function formatAgo(date: Date, now: Date = new Date()): string {
  const days = Math.floor((now.getTime() - date.getTime()) / 86_400_000);
  if (days <= 0) return "today";
  if (days === 1) return "yesterday";
  if (days < 30) return `${days} days ago`;
  const months = Math.floor(days / 30.44);
  if (months < 12) return months <= 1 ? "1 month ago" : `${months} months ago`;
  const years = Math.floor(days / 365.25);
  return years <= 1 ? "1 year ago" : `${years} years ago`;
}

/** An RFC 3339 string or seconds since the epoch as a Date; null when absent or invalid. */
export function toDate(value: string | number | null | undefined): Date | null {
  if (value === null || value === undefined) return null;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** The full date and time, for a title tooltip. */
export function exactDate(date: Date): string {
  return date.toLocaleString("en-US", { dateStyle: "medium", timeStyle: "short" });
}

/** "42 tok/s", "4.2 tok/s", "0 tok/s": a generation speed. */
export function formatTokenRate(tokensPerSecond: number): string {
  if (!Number.isFinite(tokensPerSecond) || tokensPerSecond <= 0) return "0 tok/s";
  const shown = tokensPerSecond >= 10 ? Math.round(tokensPerSecond).toString() : tokensPerSecond.toFixed(1);
  return `${shown} tok/s`;
}

/** A fraction (0.634) as "63%"; "—" when unknown. */
export function formatPercent(fraction: number | null | undefined): string {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return "—";
  return `${Math.round(fraction * 100)}%`;
}
