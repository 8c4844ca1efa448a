/**
 * A canonical text of a plain value (object keys sorted, non-finite numbers spelled out), so that two values read
 * back from different files (msgpack, JSON) compare equal exactly when they hold the same data.
 */
export function canonicalText(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalText).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalText((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return typeof v === 'number' && !Number.isFinite(v) ? String(v) : (JSON.stringify(v) ?? String(v));
}
