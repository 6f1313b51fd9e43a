/** Formatting for the panels: errors, times, durations, numbers, percentages, sizes and versions. */
import { ApiError } from '../api';

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    const where = e.field ? `${e.field}: ` : '';
    return `${where}${e.message || 'request failed'} (HTTP ${e.status})`;
  }
  if (e instanceof Error) {
    return e.message || String(e);
  }
  return String(e);
}

export function toMs(value: string | null | undefined): number | null {
  if (!value) {
    return null;
  }
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

export function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** Local wall-clock time with milliseconds, e.g. 14:03:07.042. */
export function fmtClock(t: number): string {
  const d = new Date(t);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtDateTime(value: string | null | undefined): string {
  const t = toMs(value);
  if (t === null) {
    return '—';
  }
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(t)}`;
}

function trimZeros(text: string): string {
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}

export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) {
    return '—';
  }
  const a = Math.abs(ms);
  const sign = ms < 0 ? '-' : '';
  if (a === 0) {
    return '0';
  }
  if (a < 1000) {
    return `${sign}${trimZeros(a < 10 ? a.toFixed(1) : a.toFixed(0))} ms`;
  }
  if (a < 60_000) {
    return `${sign}${trimZeros((a / 1000).toFixed(a < 10_000 ? 2 : 1))} s`;
  }
  if (a < 3_600_000) {
    const m = Math.floor(a / 60_000);
    const s = Math.round((a % 60_000) / 1000);
    return `${sign}${m} min${s ? ` ${s} s` : ''}`;
  }
  if (a < 86_400_000) {
    const h = Math.floor(a / 3_600_000);
    const m = Math.round((a % 3_600_000) / 60_000);
    return `${sign}${h} h${m ? ` ${m} min` : ''}`;
  }
  const d = Math.floor(a / 86_400_000);
  const h = Math.round((a % 86_400_000) / 3_600_000);
  return `${sign}${d} d${h ? ` ${h} h` : ''}`;
}

export function fmtPercent(fraction: number | null | undefined, digits = 2): string {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) {
    return '—';
  }
  return `${(fraction * 100).toFixed(digits)} %`;
}

export function fmtNumber(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return '—';
  }
  return trimZeros(value.toFixed(digits));
}

export function fmtAgo(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return 'never';
  }
  return seconds < 1 ? 'just now' : `${fmtDuration(seconds * 1000)} ago`;
}

export function fmtBytes(n: number): string {
  if (n < 1024) {
    return `${n} B`;
  }
  if (n < 1024 * 1024) {
    return `${(n / 1024).toFixed(1)} KB`;
  }
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function versionLabel(version: unknown): string {
  if (version === null || version === undefined || version === '' || version === 'draft') {
    return 'draft';
  }
  return `v${version}`;
}
