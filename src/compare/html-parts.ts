/**
 * Pieces shared by the HTML renderers (render-html.ts and render-task-html.ts): escaping, SVG coordinates and the
 * fixed colours per calibration algorithm. Kept apart so that neither renderer imports the other.
 */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML content and quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ESCAPES[ch]!);
}

/** Fixed colours per algorithm (Tableau 10), so a given algorithm has the same colour in every report. */
export const ALGORITHM_COLOURS: Readonly<Record<string, string>> = {
  entropy2: '#1f77b4',
  entropy: '#9467bd',
  minmax: '#d62728',
  percentile: '#2ca02c',
  mse: '#ff7f0e',
};
export const EXTRA_COLOURS: readonly string[] = ['#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export function colourOf(algorithm: string, order: readonly string[]): string {
  const known = ALGORITHM_COLOURS[algorithm];
  if (known !== undefined) return known;
  const i = order.filter((a) => ALGORITHM_COLOURS[a] === undefined).indexOf(algorithm);
  return EXTRA_COLOURS[(i < 0 ? 0 : i) % EXTRA_COLOURS.length]!;
}

/** SVG coordinates with one decimal: enough for the screen, and stable text. */
export function svgNumber(n: number): string {
  const r = Math.round(n * 10) / 10;
  return Object.is(r, -0) ? '0' : String(r);
}

/** The mask overlay's colours (RGB) and opacities: maskOverlayDataUri paints them, the report's legend names them. */
export const OVERLAY_COLOURS = {
  /** Both FP32 and the variant give this pixel the same non-background class: a light tint. */
  agree: { rgb: [44, 160, 44], alpha: 0.35 },
  /** FP32 has a class here, the variant has background: lost. */
  lost: { rgb: [214, 39, 40], alpha: 0.8 },
  /** The variant has a class where FP32 has background: gained. */
  gained: { rgb: [31, 119, 180], alpha: 0.8 },
  /** Both have a class, but not the same one. */
  changed: { rgb: [255, 191, 0], alpha: 0.8 },
} as const;
