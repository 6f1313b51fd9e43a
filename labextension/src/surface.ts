/**
 * A <canvas> the canvas's own layers (far view, minimap) draw on: drawn on an OffscreenCanvas,
 * then shown as one image (an ImageBitmap given to the element's "bitmaprenderer" context).
 *
 * Why: a <canvas> with a 2D context is handed to the compositor again in every frame the page
 * commits, changed or not (with software rendering, a copy of all its pixels: most frames a
 * fraction of a millisecond, but now and then 10-30 ms, inside the frame that handles a pan or
 * zoom step). An image is handed over once, when a new one is shown. It is shown in the same
 * frame as the page's other changes (the far view moves its canvas when it redraws): an
 * OffscreenCanvas that controls the element itself (transferControlToOffscreen) would avoid the
 * copy too, but its frames reach the screen on their own, a frame early or late against the
 * page's, and the far view's picture jumped by its margin for a frame at each redraw.
 */

export type Context2D = CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D;

export interface Surface {
  /** Draws with `paint` on a clear drawing of `width` x `height` pixels, then shows it. */
  draw(width: number, height: number, paint: (ctx: Context2D) => void): void;
  /** Shows nothing. */
  clear(): void;
}

const surfaces = new WeakMap<HTMLCanvasElement, Surface | null>();

/** The surface of `el`, made on first use (null where the browser cannot draw in 2D). */
export function surfaceOf(el: HTMLCanvasElement): Surface | null {
  let surface = surfaces.get(el);
  if (surface === undefined) {
    surface = typeof OffscreenCanvas === 'function' ? imageSurface(el) : directSurface(el);
    surfaces.set(el, surface);
  }
  return surface;
}

function sized(target: { width: number; height: number }, width: number, height: number): void {
  const w = Math.max(1, Math.round(width));
  const h = Math.max(1, Math.round(height));
  if (target.width !== w || target.height !== h) {
    target.width = w;
    target.height = h;
  }
}

function imageSurface(el: HTMLCanvasElement): Surface | null {
  const shown = el.getContext('bitmaprenderer');
  const drawing = new OffscreenCanvas(1, 1);
  const ctx = drawing.getContext('2d');
  if (!shown || !ctx) {
    return directSurface(el);
  }
  return {
    draw(width, height, paint) {
      sized(drawing, width, height); // a drawing handed over starts blank
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      paint(ctx);
      sized(el, drawing.width, drawing.height);
      shown.transferFromImageBitmap(drawing.transferToImageBitmap());
    },
    clear() {
      shown.transferFromImageBitmap(null);
    }
  };
}

/** Drawing on the element itself, where there is no OffscreenCanvas. */
function directSurface(el: HTMLCanvasElement): Surface | null {
  const ctx = el.getContext('2d');
  if (!ctx) {
    return null;
  }
  return {
    draw(width, height, paint) {
      sized(el, width, height);
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, el.width, el.height);
      paint(ctx);
    },
    clear() {
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, el.width, el.height);
    }
  };
}
