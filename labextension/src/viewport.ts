/**
 * The canvas's view as the layers drawn beside React Flow read it (far view, minimap, which
 * nodes are DOM): what part of the flow is in view, a hook called when that changes, and the
 * size a node is drawn with.
 */
import * as React from 'react';
import type { Node } from '@xyflow/react';

type ViewState = { transform: [number, number, number]; width: number; height: number };

/** The size a node is drawn with before React Flow has measured it. */
export const DEFAULT_NODE_SIZE = { width: 180, height: 62 };

export function sizeOf(node: Node): { width: number; height: number } {
  const m = node.measured;
  return m?.width && m.height ? { width: m.width, height: m.height } : DEFAULT_NODE_SIZE;
}

/** The part of the flow in view (flow coordinates) and the zoom, from React Flow's store. */
export function viewOf(state: unknown): { x0: number; y0: number; x1: number; y1: number; zoom: number } {
  const { transform, width, height } = state as ViewState;
  const [tx, ty, zoom] = transform;
  return { x0: -tx / zoom, y0: -ty / zoom, x1: (width - tx) / zoom, y1: (height - ty) / zoom, zoom };
}

/** Calls `onChange` (in the same frame) whenever the view pans, zooms or is resized. */
export function useViewChange(store: { subscribe: (l: (s: any, prev: any) => void) => () => void }, onChange: () => void): void {
  React.useEffect(
    () =>
      store.subscribe((s: ViewState, prev: ViewState) => {
        if (s.transform !== prev.transform || s.width !== prev.width || s.height !== prev.height) {
          onChange();
        }
      }),
    [store, onChange]
  );
}
