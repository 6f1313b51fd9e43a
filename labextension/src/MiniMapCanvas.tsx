/**
 * The minimap: every node of the flow (also those drawn by the far view, which React Flow's
 * own minimap leaves out as hidden) and the part in view, on one small <canvas> redrawn with
 * the view. A press or drag on it centres the view there; the wheel zooms.
 */
import * as React from 'react';
import { Panel, useReactFlow, useStoreApi } from '@xyflow/react';
import type { CanvasNode } from './FlowNodeView';
import { surfaceOf } from './surface';
import { sizeOf, useViewChange, viewOf } from './viewport';

const WIDTH = 200;
const HEIGHT = 150;
const PAD = 6; // pixels round the drawing

export function MiniMapCanvas(props: { nodes: CanvasNode[]; dark: boolean }): JSX.Element {
  const store = useStoreApi();
  const flow = useReactFlow();
  const canvas = React.useRef<HTMLCanvasElement>(null);
  // flow -> minimap pixels, as last drawn: what a press on the minimap is read with
  const mapping = React.useRef({ scale: 1, ox: 0, oy: 0 });
  const colours = React.useRef<{ dark: boolean; muted: string; accent: string } | null>(null);
  // The nodes' boxes and their bounds: with the nodes, not with every frame of a pan.
  const boxes = React.useMemo(() => {
    const list = props.nodes.map(n => ({ x: n.position.x, y: n.position.y, ...sizeOf(n), selected: !!n.selected }));
    const bounds = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
    for (const b of list) {
      bounds.x0 = Math.min(bounds.x0, b.x);
      bounds.y0 = Math.min(bounds.y0, b.y);
      bounds.x1 = Math.max(bounds.x1, b.x + b.width);
      bounds.y1 = Math.max(bounds.y1, b.y + b.height);
    }
    return { list, bounds };
  }, [props.nodes]);

  const draw = React.useCallback(() => {
    const el = canvas.current;
    const surface = el && surfaceOf(el);
    if (!el || !surface) {
      return;
    }
    const dpr = window.devicePixelRatio || 1;
    // The drawing covers the nodes and the view.
    const v = viewOf(store.getState());
    const view = { x: v.x0, y: v.y0, w: v.x1 - v.x0, h: v.y1 - v.y0 };
    const { list, bounds } = boxes;
    const x0 = Math.min(v.x0, bounds.x0);
    const y0 = Math.min(v.y0, bounds.y0);
    const x1 = Math.max(v.x1, bounds.x1);
    const y1 = Math.max(v.y1, bounds.y1);
    const scale = Math.min((WIDTH - 2 * PAD) / (x1 - x0 || 1), (HEIGHT - 2 * PAD) / (y1 - y0 || 1));
    const ox = PAD + ((WIDTH - 2 * PAD) - (x1 - x0) * scale) / 2 - x0 * scale;
    const oy = PAD + ((HEIGHT - 2 * PAD) - (y1 - y0) * scale) / 2 - y0 * scale;
    mapping.current = { scale, ox, oy };

    if (colours.current?.dark !== props.dark) {
      // Read once per theme: reading styles on every frame would force a style update first.
      const css = getComputedStyle(el);
      const colour = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
      colours.current = { dark: props.dark, muted: colour('--fo-muted', '#888'), accent: colour('--fo-accent', '#1976d2') };
    }
    const { muted, accent } = colours.current;
    surface.draw(WIDTH * dpr, HEIGHT * dpr, ctx => {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      const plain = new Path2D();
      const selected = new Path2D();
      for (const b of list) {
        (b.selected ? selected : plain).rect(b.x * scale + ox, b.y * scale + oy, Math.max(1.5, b.width * scale), Math.max(1.5, b.height * scale));
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
    });
  }, [store, props.dark, boxes]);

  useViewChange(store, draw);
  React.useEffect(draw, [draw]);

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
