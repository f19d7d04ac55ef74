// Time zones and build times for tag templates (SPEC §2): `-time` is the build's creation time in
// the template's zone, an offset (`UTC+8`, `UTC-5:30`, `+08:00`) or an IANA name. Pure: no Node
// imports, no clock.

/** The zone of a template that names none (as in the SPEC example). */
export const DEFAULT_TIME_ZONE = 'UTC+8';

export const BUILD_TIME_FORMATS = ['yyyyMMdd', 'yyyyMMddHHmm'] as const;
export type BuildTimeFormat = (typeof BUILD_TIME_FORMATS)[number];

type ParsedTimeZone = { kind: 'offset'; minutes: number } | { kind: 'iana'; format: Intl.DateTimeFormat };

const zoneCache = new Map<string, ParsedTimeZone | null>();

function parseTimeZone(tz: string): ParsedTimeZone | null {
  if (zoneCache.has(tz)) return zoneCache.get(tz)!;
  const parsed = parseTimeZoneUncached(tz);
  if (zoneCache.size >= 256) zoneCache.clear();
  zoneCache.set(tz, parsed);
  return parsed;
}

function parseTimeZoneUncached(raw: string): ParsedTimeZone | null {
  if (typeof raw !== 'string') return null;
  const tz = raw.trim();
  if (!tz || tz.length > 64) return null;
  if (/^(?:UTC|GMT|Z)$/i.test(tz)) return { kind: 'offset', minutes: 0 };
  const m = /^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?$/i.exec(tz);
  if (m) {
    const hours = Number(m[2]);
    const mins = m[3] === undefined ? 0 : Number(m[3]);
    if (hours > 14 || mins > 59 || (hours === 14 && mins > 0)) return null;
    return { kind: 'offset', minutes: (m[1] === '-' ? -1 : 1) * (hours * 60 + mins) };
  }
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(tz)) return null;
  try {
    const format = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    });
    return { kind: 'iana', format };
  } catch {
    return null;
  }
}

/** `UTC+8`, `UTC-5:30`, `+08:00`, `UTC`, `GMT+1`, or an IANA name such as `Asia/Shanghai`. */
export function isValidTimeZone(tz: string): boolean {
  return parseTimeZone(tz) !== null;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

export function formatBuildTime(time: Date, format: BuildTimeFormat, timeZone: string = DEFAULT_TIME_ZONE): string {
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw new RangeError('build time is not a valid date');
  const zone = parseTimeZone(timeZone);
  if (!zone) throw new RangeError(`invalid time zone "${timeZone}"`);
  let y: number, mo: number, d: number, h: number, mi: number;
  if (zone.kind === 'offset') {
    const local = new Date(time.getTime() + zone.minutes * 60_000);
    y = local.getUTCFullYear();
    mo = local.getUTCMonth() + 1;
    d = local.getUTCDate();
    h = local.getUTCHours();
    mi = local.getUTCMinutes();
  } else {
    const parts: Record<string, string> = {};
    for (const p of zone.format.formatToParts(time)) parts[p.type] = p.value;
    y = Number(parts.year);
    mo = Number(parts.month);
    d = Number(parts.day);
    h = Number(parts.hour) % 24;
    mi = Number(parts.minute);
  }
  const date = `${pad(y, 4)}${pad(mo)}${pad(d)}`;
  return format === 'yyyyMMdd' ? date : `${date}${pad(h)}${pad(mi)}`;
}
