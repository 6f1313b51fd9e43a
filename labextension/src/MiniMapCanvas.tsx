/**
 * The minimap: every node of the flow (also those drawn by the far view, which React Flow's
 * own minimap leaves out as hidden) and the part in view, on one small <canvas> redrawn with
 * the view. A press or drag on it centres the view there; the wheel zooms.
 */
import * as React from 'react';
import { Panel, useReactFlow, useStoreApi } from '@xyflow/react';
import type { CanvasNode } from './FlowNodeView';
import { DEFAULT_NODE_SIZE } from './FarView';

const WIDTH = 200;
const HEIGHT = 150;
const PAD = 6; // pixels round the drawing

type Transform = [number, number, number];

export function MiniMapCanvas(props: { nodes: CanvasNode[]; dark: boolean }): JSX.Element {
  const store = useStoreApi();
  const flow = useReactFlow();
  const canvas = React.useRef<HTMLCanvasElement>(null);
  const nodesRef = React.useRef(props.nodes);
  nodesRef.current = props.nodes;
  // flow -> minimap pixels, as last drawn: what a press on the minimap is read with
  const mapping = React.useRef({ scale: 1, ox: 0, oy: 0 });
  const colours = React.useRef<{ muted: string; accent: string } | null>(null);
  React.useMemo(() => (colours.current = null), [props.dark]); // the theme changed: read them again

  const draw = React.useCallback(() => {
    const el = canvas.current;
    const ctx = el?.getContext('2d');
    if (!el || !ctx) {
      return;
    }
    const dpr = window.devicePixelRatio || 1;
    if (el.width !== WIDTH * dpr) {
      el.width = WIDTH * dpr;
      el.height = HEIGHT * dpr;
    }
    const { transform, width, height } = store.getState() as { transform: Transform; width: number; height: number };
    const [tx, ty, zoom] = transform;
    const view = { x: -tx / zoom, y: -ty / zoom, w: width / zoom, h: height / zoom };
    // The drawing covers the nodes and the view.
    let x0 = view.x;
    let y0 = view.y;
    let x1 = view.x + view.w;
    let y1 = view.y + view.h;
    const nodes = nodesRef.current;
    for (const n of nodes) {
      const w = n.measured?.width || DEFAULT_NODE_SIZE.width;
      const h = n.measured?.height || DEFAULT_NODE_SIZE.height;
      x0 = Math.min(x0, n.position.x);
      y0 = Math.min(y0, n.position.y);
      x1 = Math.max(x1, n.position.x + w);
      y1 = Math.max(y1, n.position.y + h);
    }
    const scale = Math.min((WIDTH - 2 * PAD) / (x1 - x0 || 1), (HEIGHT - 2 * PAD) / (y1 - y0 || 1));
    const ox = PAD + ((WIDTH - 2 * PAD) - (x1 - x0) * scale) / 2 - x0 * scale;
    const oy = PAD + ((HEIGHT - 2 * PAD) - (y1 - y0) * scale) / 2 - y0 * scale;
    mapping.current = { scale, ox, oy };

    if (!colours.current) {
      // Read once per theme: reading styles on every frame would force a style update first.
      const css = getComputedStyle(el);
      const colour = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
      colours.current = { muted: colour('--fo-muted', '#888'), accent: colour('--fo-accent', '#1976d2') };
    }
    const { muted, accent } = colours.current;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, WIDTH, HEIGHT);
    const plain = new Path2D();
    const selected = new Path2D();
    for (const n of nodes) {
      const w = Math.max(1.5, (n.measured?.width || DEFAULT_NODE_SIZE.width) * scale);
      const h = Math.max(1.5, (n.measured?.height || DEFAULT_NODE_SIZE.height) * scale);
      (n.selected ? selected : plain).rect(n.position.x * scale + ox, n.position.y * scale + oy, w, h);
    }
    ctx.fillStyle = muted;
    ctx.globalAlpha = 0.6;
    ctx.fill(plain);
    ctx.globalAlpha = 1;
    ctx.fillStyle = accent;
    ctx.fill(selected);
    // Shade what is out of view, outline the view.
    const vx = view.x * scale + ox;
    const vy = view.y * scale + oy;
    const mask = new Path2D();
    mask.rect(0, 0, WIDTH, HEIGHT);
    mask.rect(vx, vy, view.w * scale, view.h * scale);
    ctx.fillStyle = props.dark ? 'rgba(0, 0, 0, 0.45)' : 'rgba(240, 240, 240, 0.6)';
    ctx.fill(mask, 'evenodd');
    ctx.strokeStyle = accent;
    ctx.lineWidth = 1;
    ctx.strokeRect(vx, vy, view.w * scale, view.h * scale);
  }, [store, props.dark]);

  React.useEffect(() => {
    draw();
    return store.subscribe((s: any, prev: any) => {
      if (s.transform !== prev.transform || s.width !== prev.width || s.height !== prev.height) {
        draw();
      }
    });
  }, [store, draw]);
  React.useEffect(draw, [props.nodes, draw]);

  const centreOn = (ev: React.PointerEvent | PointerEvent) => {
    const el = canvas.current;
    if (!el) {
      return;
    }
    const box = el.getBoundingClientRect();
    const { scale, ox, oy } = mapping.current;
    const x = (ev.clientX - box.left - ox) / scale;
    const y = (ev.clientY - box.top - oy) / scale;
    void flow.setCenter(x, y, { zoom: flow.getZoom(), duration: 0 });
  };

  const onPointerDown = (ev: React.PointerEvent) => {
    if (ev.button !== 0) {
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
    centreOn(ev);
    const move = (e: PointerEvent) => centreOn(e);
    const up = () => {
      window.removeEventListener('pointermove', move);
      window.removeEventListener('pointerup', up);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', up);
  };

  React.useEffect(() => {
    // Not a React handler: a passive one could not keep the page from scrolling.
    const el = canvas.current;
    const onWheel = (ev: WheelEvent) => {
      ev.preventDefault();
      ev.stopPropagation();
      void flow.zoomTo(flow.getZoom() * (ev.deltaY < 0 ? 1.2 : 1 / 1.2));
    };
    el?.addEventListener('wheel', onWheel, { passive: false });
    return () => el?.removeEventListener('wheel', onWheel);
  }, [flow]);

  return (
    <Panel position="bottom-right" className="fo-minimap">
      <canvas
        ref={canvas}
        data-testid="minimap"
        aria-label="Minimap: press or drag to move the view, scroll to zoom"
        style={{ width: WIDTH, height: HEIGHT }}
        onPointerDown={onPointerDown}
      />
    </Panel>
  );
}
