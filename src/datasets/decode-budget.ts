/**
 * A bound on the pixels of whole-image decodes in flight at once, across every dataset in the process.
 *
 * Most photos stream through libvips: a baseline JPEG or a plain PNG is read a strip at a time, and a 12-megapixel
 * one needs 3-14 MB to be shrunk to a model's input. Others must be decoded whole before the first row comes out:
 * a progressive JPEG keeps every DCT coefficient (45-53 MB for the 10-12 MP wallpapers of images/calib), an
 * interlaced PNG or a WebP the whole image (41 and 106 MB at 12 MP). With two decodes in flight, two of those at
 * once doubled a pass's peak, and whether that happened depended on the file order and the number of images.
 * With the budget, whole-image decodes whose source pixels together exceed it wait for each other, so the peak
 * depends on the largest image, not on how many there are or how they are ordered. One image over the budget still
 * decodes, alone. Waiters go first come, first served. Streaming decodes never wait.
 */
export class DecodeBudget {
  private inUse = 0;
  private running = 0;
  private readonly waiting: Array<{ pixels: number; wake: () => void }> = [];
  /** The most pixels ever decoding at once under this budget (for tests and diagnostics). */
  peak = 0;

  /** budget: pixels; Infinity for no bound. */
  constructor(public budget: number) {}

  /** Waits for room for `pixels`, and returns the function that gives it back (a second call does nothing). */
  async acquire(pixels: number): Promise<() => void> {
    if (this.waiting.length > 0 || !this.fits(pixels)) {
      await new Promise<void>((wake) => this.waiting.push({ pixels, wake }));
    } else {
      this.take(pixels);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse -= pixels;
      this.running--;
      while (this.waiting.length > 0 && this.fits(this.waiting[0]!.pixels)) {
        const next = this.waiting.shift()!;
        this.take(next.pixels);
        next.wake();
      }
    };
  }

  private fits(pixels: number): boolean {
    return this.running === 0 || this.inUse + pixels <= this.budget;
  }

  private take(pixels: number): void {
    this.inUse += pixels;
    this.running++;
    if (this.inUse > this.peak) this.peak = this.inUse;
  }
}

/** 16 megapixels: two 8-megapixel progressive photos decode together, two 12-megapixel ones one after the other. */
export const DEFAULT_DECODE_PIXEL_BUDGET = 16_000_000;

/** The process-wide budget decodeImage() uses. */
export const decodeBudget = new DecodeBudget(DEFAULT_DECODE_PIXEL_BUDGET);

/**
 * Whether libvips must decode this image whole before resizing it: everything but baseline JPEG and
 * non-interlaced PNG (measured peak at 12 MP: baseline JPEG 3-7 MB, PNG 14 MB; progressive JPEG 45-53 MB,
 * interlaced PNG 41 MB, WebP 106 MB).
 */
export function decodesWhole(meta: { format?: string; isProgressive?: boolean }): boolean {
  if (meta.format === 'jpeg' || meta.format === 'png') return meta.isProgressive === true;
  return true;
}
