/**
 * The layer under React Flow's viewport: the dot grid, and every node and edge React Flow is
 * not rendering (`hidden`), drawn on one <canvas>.
 *
 * Why: zoomed out below FAR_BELOW a node is a few pixels of unreadable DOM, and a thousand of
 * them cost every frame (style, layout, paint and the compositor's layerization grow with the
 * elements, whatever moved). Below FAR_BELOW the canvas hides the DOM nodes and draws them
 * here instead, with what can be seen at that size: category, status, problems, selection,
 * who is editing, and the label where it fits. Nodes drawn here are still dragged, clicked and
 * selected: pointer events on the pane hit-test them before React Flow's pan starts.
 *
 * The dot grid is drawn there too. The canvas overhangs the pane, so that a pan only moves it
 * (React Flow's SVG background repainted its whole pattern on every pan step).
 */
import * as React from 'react';
import { useReactFlow, useStoreApi, type Edge } from '@xyflow/react';
import type { CanvasNode } from './FlowNodeView';
import type { FlowNodeData } from './sharedflow';
import { outputPorts } from './rules';
import { surfaceOf, type Context2D } from './surface';
import { DEFAULT_NODE_SIZE, sizeOf, useViewChange, viewOf } from './viewport';

/** Zooming out below this, nodes are drawn on the canvas, not as DOM... */
export const FAR_BELOW = 0.4;
/** ...until zooming in to this (apart, so that a zoom held near one of them does not flip). */
export const NEAR_FROM = 0.5;
// Nodes that come into view as DOM join a few a frame, nearest the middle first, once the view
// has rested (drawn on the canvas until then: a node joining the DOM costs far more than a
// frame of zooming or panning); those that leave go at once, a larger batch a frame.
const SHOW_PER_FRAME = 12;
const HIDE_PER_FRAME = 60;
const GRID = 20; // flow units between dots
// While the zoom changes or a drawn node is dragged, the canvas is drawn at half the device's
// resolution and without its margin, then sharp again once that has stopped for a moment:
// every such step redraws the whole canvas, and handing its pixels to the compositor
// (software rendering) costs in proportion to their number.
const MOVING_RESOLUTION = 0.5;
const REST_MS = 150; // the view or a drag has stopped for this long: it rests
const DRAG_SLOP = 3; // screen pixels a press may move and still be a click

type Transform = [number, number, number];

interface Box {
  id: string;
  x: number;
  y: number;
  w: number;
  h: number;
  node: CanvasNode;
}

interface Line {
  sx: number;
  sy: number;
  tx: number;
  ty: number;
  kind: string; // stroke group: '', 'problem', a run status
}

export interface FarViewProps {
  nodes: CanvasNode[];
  edges: Edge[];
  dark: boolean;
  /** drag of drawn nodes: their new positions (snapped) */
  onMove: (moves: { id: string; x: number; y: number }[]) => void;
  /** a click on a drawn node (additive: with Shift, Ctrl or Meta) */
  onNodeClick: (id: string, additive: boolean) => void;
}

interface Palette {
  node: string;
  border: string;
  fg: string;
  muted: string;
  accent: string;
  err: string;
  ok: string;
  run: string;
  wait: string;
  warn: string;
  dots: string;
  edge: string;
  font: string;
  categories: { [category: string]: string };
}

function readPalette(el: HTMLElement): Palette {
  const css = getComputedStyle(el);
  const v = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
  return {
    node: v('--fo-node', '#fff'),
    border: v('--fo-border', '#ccc'),
    fg: v('--fo-fg', '#222'),
    muted: v('--fo-muted', '#666'),
    accent: v('--fo-accent', '#1976d2'),
    err: v('--fo-err', '#d32f2f'),
    ok: v('--fo-ok', '#2e7d32'),
    run: v('--fo-run', '#1e88e5'),
    wait: v('--fo-wait', '#8e24aa'),
    warn: v('--fo-warn', '#f57c00'),
    dots: v('--fo-grid-dot', '#91919a'),
    edge: v('--xy-edge-stroke', v('--xy-edge-stroke-default', '#b1b1b7')),
    font: css.fontFamily || 'sans-serif',
    // The stripe colours of the DOM nodes (base.css), by catalogue category.
    categories: {
      Triggers: v('--fo-cat-triggers', '#f9a825'),
      AI: v('--fo-cat-ai', '#8e24aa'),
      Actions: v('--fo-cat-actions', '#1e88e5'),
      'Control Flow': v('--fo-cat-control-flow', '#00897b')
    }
  };
}

function statusColour(p: Palette, status: string | undefined): string | null {
  switch (status) {
    case 'running':
      return p.run;
    case 'success':
      return p.ok;
    case 'failed':
      return p.err;
    case 'retrying':
    case 'compensating':
    case 'compensated':
      return p.warn;
    case 'compensation_failed':
      return p.err;
    case 'waiting':
      return p.wait;
    default:
      return null;
  }
}

/** The path of `key` in `paths`, made when first asked for: one path per colour, drawn at once. */
function pathIn(paths: Map<string, Path2D>, key: string): Path2D {
  let path = paths.get(key);
  if (!path) {
    path = new Path2D();
    paths.set(key, path);
  }
  return path;
}

/** Where an edge leaves its source and enters its target, as the node's handles are laid out. */
function edgeLine(edge: Edge, boxes: Map<string, Box>): Line | null {
  const s = boxes.get(edge.source);
  const t = boxes.get(edge.target);
  if (!s || !t) {
    return null;
  }
  const at = (box: Box, handle: string | null | undefined, outputs: boolean): number => {
    const data = box.node.data;
    const ports = outputs ? outputPorts(data.spec, data.node) : data.spec?.inputs ?? [];
    const i = Math.max(0, handle ? ports.findIndex(p => p.name === handle) : 0);
    return box.y + (box.h * (i + 1)) / (Math.max(ports.length, 1) + 1);
  };
  const cls = edge.className ?? '';
  const kind = cls.includes('fo-edge-problem') ? 'problem' : /fo-edge-(\w+)/.exec(cls)?.[1] ?? '';
  return { sx: s.x + s.w, sy: at(s, edge.sourceHandle, true), tx: t.x, ty: at(t, edge.targetHandle, false), kind };
}

type Rect = { x0: number; y0: number; x1: number; y1: number };

/** Whether the view is far out at this zoom, given whether it was (null: not known yet). */
function farAt(zoom: number, was: boolean | null): boolean {
  return was === null ? zoom < (FAR_BELOW + NEAR_FROM) / 2 : was ? zoom < NEAR_FROM : zoom < FAR_BELOW;
}

/**
 * The nodes to render as DOM: none below FAR_BELOW (the far view draws them), otherwise those
 * in or near the view, and the selected ones (a node being dragged stays). Nodes far outside
 * the view are drawn by the far view too: React Flow then has only what can be seen.
 */
export function useDomNodes(nodes: Map<string, FlowNodeData>, measured: Map<string, { width: number; height: number }>, selected: Set<string>): Set<string> {
  const store = useStoreApi();
  const [shown, setShown] = React.useState<Set<string>>(() => new Set());
  const st = React.useRef({ far: null as boolean | null, covered: null as Rect | null, target: new Set<string>(), raf: 0, moved: 0, later: 0 });
  const input = React.useRef({ nodes, measured, selected });
  input.current = { nodes, measured, selected };

  const view = React.useCallback(() => viewOf(store.getState()), [store]);

  const pump = React.useCallback(() => {
    st.current.raf = 0;
    // Nodes join only once the view has rested: until then, come back when it will have.
    const still = performance.now() - st.current.moved;
    const resting = still >= REST_MS;
    if (!resting) {
      window.clearTimeout(st.current.later);
      st.current.later = window.setTimeout(pump, REST_MS - still);
    }
    setShown(prev => {
      const { target } = st.current;
      const next = new Set(prev);
      let out = HIDE_PER_FRAME;
      for (const id of prev) {
        if (!target.has(id) && out-- > 0) {
          next.delete(id);
        }
      }
      let missing = resting ? [...target].filter(id => !prev.has(id)) : [];
      if (missing.length > SHOW_PER_FRAME) {
        const v = view();
        const cx = (v.x0 + v.x1) / 2;
        const cy = (v.y0 + v.y1) / 2;
        const { nodes } = input.current;
        const d = (id: string) => {
          const p = nodes.get(id)?.position ?? { x: 0, y: 0 };
          return (p.x - cx) ** 2 + (p.y - cy) ** 2;
        };
        missing = missing.sort((a, b) => d(a) - d(b)).slice(0, SHOW_PER_FRAME);
      }
      missing.forEach(id => next.add(id));
      const hidesLeft = [...next].some(id => !target.has(id));
      const showsLeft = resting && [...target].some(id => !next.has(id));
      if ((hidesLeft || showsLeft) && !st.current.raf) {
        st.current.raf = requestAnimationFrame(pump);
      }
      return next.size === prev.size && [...next].every(id => prev.has(id)) ? prev : next;
    });
  }, [view]);

  const retarget = React.useCallback(() => {
    const v = view();
    const s = st.current;
    s.far = farAt(v.zoom, s.far);
    const target = new Set<string>();
    const { nodes, measured, selected } = input.current;
    if (s.far) {
      s.covered = null;
    } else {
      // The view and half a view round it: small pans need no new nodes.
      const hw = (v.x1 - v.x0) / 2;
      const hh = (v.y1 - v.y0) / 2;
      const c = (s.covered = { x0: v.x0 - hw, y0: v.y0 - hh, x1: v.x1 + hw, y1: v.y1 + hh });
      nodes.forEach((n, id) => {
        const size = measured.get(id) ?? DEFAULT_NODE_SIZE; // not yet a React Flow node: no sizeOf
        if (n.position.x + size.width >= c.x0 && n.position.x <= c.x1 && n.position.y + size.height >= c.y0 && n.position.y <= c.y1) {
          target.add(id);
        }
      });
      // A DOM node dragged out of that area stays one until it is let go.
      selected.forEach(id => nodes.has(id) && target.add(id));
    }
    s.target = target;
    if (!s.raf) {
      s.raf = requestAnimationFrame(pump);
    }
  }, [view, pump]);

  // Again when the view crosses a zoom threshold or leaves the covered area, and when the
  // document or the selection changes.
  const onView = React.useCallback(() => {
    const v = view();
    const s = st.current;
    s.moved = performance.now();
    const far = farAt(v.zoom, s.far);
    const c = s.covered;
    if (far !== s.far || (!far && (!c || v.x0 < c.x0 || v.y0 < c.y0 || v.x1 > c.x1 || v.y1 > c.y1))) {
      retarget();
    }
  }, [view, retarget]);
  useViewChange(store, onView);
  React.useEffect(retarget, [nodes, selected, retarget]);
  React.useEffect(
    () => () => {
      cancelAnimationFrame(st.current.raf);
      window.clearTimeout(st.current.later);
    },
    []
  );
  return shown;
}

export function FarView(props: FarViewProps): JSX.Element {
  const store = useStoreApi();
  const flow = useReactFlow();
  const canvas = React.useRef<HTMLCanvasElement>(null);
  const palette = React.useRef<{ dark: boolean; colours: Palette } | null>(null); // read once per theme
  const dotTile = React.useRef<{ colour: string; pattern: CanvasPattern | null } | null>(null);
  const blank = React.useRef(false);
  const widths = React.useRef(new Map<string, number>()).current; // label -> width at the label font

  // What to draw, in flow coordinates: rebuilt when the nodes or edges change, not per frame.
  const scene = React.useMemo(() => {
    const all = new Map<string, Box>();
    const drawn: Box[] = [];
    for (const n of props.nodes) {
      const size = sizeOf(n);
      const box = { id: n.id, x: n.position.x, y: n.position.y, w: size.width, h: size.height, node: n };
      all.set(n.id, box);
      if (n.hidden) {
        drawn.push(box);
      }
    }
    const lines: Line[] = [];
    for (const e of props.edges) {
      // React Flow draws an edge only when both its ends are rendered.
      if (all.get(e.source)?.node.hidden || all.get(e.target)?.node.hidden) {
        const line = edgeLine(e, all);
        if (line) {
          lines.push(line);
        }
      }
    }
    return { drawn, lines };
  }, [props.nodes, props.edges]);
  const sceneRef = React.useRef(scene);
  sceneRef.current = scene;

  // The canvas overhangs the pane by a margin each way: a pan moves it (no redraw, no new
  // pixels to hand to the compositor) until it has moved by the margin, or the zoom changes.
  // A redraw moves it back in the same frame as its new picture (see surface.ts).
  const drawnFor = React.useRef<{ tx: number; ty: number; zoom: number; width: number; height: number; margin: number } | null>(null);
  const sharpLater = React.useRef(0);
  const dragging = React.useRef(false); // a drawn node, by this canvas's pointer handlers
  const draw = React.useCallback((force = true): void => {
    const el = canvas.current;
    const surface = el && surfaceOf(el);
    if (!el || !surface) {
      return;
    }
    const { transform, width, height } = store.getState() as { transform: Transform; width: number; height: number };
    const [tx, ty, zoom] = transform;
    const { drawn, lines } = sceneRef.current;
    const cell = GRID * zoom;
    const grid = cell >= 6; // too dense to read below 6 pixels apart: not drawn there
    if (!drawn.length && !lines.length && !grid) {
      if (!blank.current) {
        surface.clear();
        blank.current = true; // and left so: an unchanged canvas costs nothing
      }
      return;
    }
    const at = drawnFor.current;
    if (!force && !blank.current && at && at.zoom === zoom && at.width === width && at.height === height && Math.abs(tx - at.tx) < at.margin && Math.abs(ty - at.ty) < at.margin) {
      el.style.transform = `translate(${tx - at.tx - at.margin}px, ${ty - at.ty - at.margin}px)`;
      return;
    }
    const moving = dragging.current || (!force && !!at && at.zoom !== zoom);
    window.clearTimeout(sharpLater.current);
    if (moving) {
      sharpLater.current = window.setTimeout(() => draw(), REST_MS);
    }
    // No margin while moving: the next step redraws anyway.
    const margin = moving ? 0 : Math.round(Math.max(width, height) / 4);
    drawnFor.current = { tx, ty, zoom, width, height, margin };
    blank.current = false;
    const dpr = (window.devicePixelRatio || 1) * (moving ? MOVING_RESOLUTION : 1); // canvas pixels per CSS pixel
    const cw = width + 2 * margin;
    const ch = height + 2 * margin;
    el.style.width = `${cw}px`;
    el.style.height = `${ch}px`;
    el.style.transform = `translate(${-margin}px, ${-margin}px)`;
    if (palette.current?.dark !== props.dark) {
      palette.current = { dark: props.dark, colours: readPalette(el) };
    }
    const p = palette.current.colours;
    surface.draw(cw * dpr, ch * dpr, ctx => {
      const ox = tx + margin; // where the flow's origin is on the canvas
      const oy = ty + margin;
      if (grid) {
        // One fill with a tile of one dot, scaled and moved with the flow.
        if (!dotTile.current || dotTile.current.colour !== p.dots) {
          const tile = document.createElement('canvas');
          tile.width = tile.height = GRID * 2; // twice the grid in pixels: a round dot when scaled
          const t = tile.getContext('2d')!;
          t.fillStyle = p.dots;
          t.beginPath();
          t.arc(GRID, GRID, 1, 0, Math.PI * 2); // React Flow's dots: radius 0.5 flow units
          t.fill();
          dotTile.current = { colour: p.dots, pattern: ctx.createPattern(tile, 'repeat') };
        }
        const pattern = dotTile.current.pattern;
        if (pattern) {
          // The tile's dot is in its middle: half a cell back puts the dots on the grid's lines.
          const k = (zoom * dpr) / 2;
          pattern.setTransform(new DOMMatrix([k, 0, 0, k, (ox - cell / 2) * dpr, (oy - cell / 2) * dpr]));
          ctx.fillStyle = pattern;
          ctx.fillRect(0, 0, cw * dpr, ch * dpr);
        }
      }
      if (!drawn.length && !lines.length) {
        return;
      }
      // Flow coordinates from here on; what is outside the canvas is skipped.
      ctx.setTransform(zoom * dpr, 0, 0, zoom * dpr, ox * dpr, oy * dpr);
      const px = 1 / zoom; // one screen pixel, in flow units
      const left = -ox / zoom;
      const top = -oy / zoom;
      const right = left + cw / zoom;
      const bottom = top + ch / zoom;
      const inView = (x0: number, y0: number, x1: number, y1: number) => x1 >= left && x0 <= right && y1 >= top && y0 <= bottom;

      // Edges, one path per stroke colour.
      const strokes = new Map<string, Path2D>();
      for (const l of lines) {
        if (!inView(Math.min(l.sx, l.tx), Math.min(l.sy, l.ty), Math.max(l.sx, l.tx), Math.max(l.sy, l.ty))) {
          continue;
        }
        const path = pathIn(strokes, l.kind);
        const bend = Math.max(Math.abs(l.tx - l.sx) / 2, 20);
        path.moveTo(l.sx, l.sy);
        path.bezierCurveTo(l.sx + bend, l.sy, l.tx - bend, l.ty, l.tx, l.ty);
      }
      ctx.lineWidth = px;
      strokes.forEach((path, kind) => {
        ctx.strokeStyle = kind === 'problem' ? p.err : statusColour(p, kind) ?? p.edge;
        ctx.stroke(path);
      });

      // Nodes: bodies, then the category stripe, then outlines, each grouped by colour.
      const visible = drawn.filter(b => inView(b.x, b.y, b.x + b.w, b.y + b.h));
      const bodies = new Path2D();
      const stripes = new Map<string, Path2D>();
      const outlines = new Map<string, Path2D>();
      const stripe = Math.max(4, 2 * px);
      for (const b of visible) {
        bodies.rect(b.x, b.y, b.w, b.h);
        pathIn(stripes, b.node.data.spec?.category ?? '').rect(b.x, b.y, stripe, b.h);
        const d = b.node.data;
        const status = statusColour(p, d.run?.status);
        const outline = b.node.selected
          ? p.accent
          : d.lock?.user.color ?? d.remoteSelection?.[0]?.color ?? (d.problems?.length ? p.err : status ?? p.border);
        pathIn(outlines, outline).rect(b.x, b.y, b.w, b.h);
      }
      ctx.fillStyle = p.node;
      ctx.fill(bodies);
      stripes.forEach((path, category) => {
        ctx.fillStyle = p.categories[category] ?? p.muted;
        ctx.fill(path);
      });
      outlines.forEach((path, colour) => {
        ctx.strokeStyle = colour;
        ctx.lineWidth = colour === p.border ? px : Math.max(2 * px, 2);
        ctx.stroke(path);
      });
      // Skipped nodes are faded, as on the DOM node.
      const skipped = visible.filter(b => b.node.data.run?.status === 'skipped');
      if (skipped.length) {
        ctx.fillStyle = p.node;
        ctx.globalAlpha = 0.45;
        skipped.forEach(b => ctx.fillRect(b.x, b.y, b.w, b.h));
        ctx.globalAlpha = 1;
      }

      // Labels, in screen pixels, where a node is wide enough for a few letters.
      if (zoom * DEFAULT_NODE_SIZE.width >= 48) {
        const size = 11;
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.font = `600 ${size}px ${p.font}`;
        ctx.fillStyle = p.fg;
        ctx.textBaseline = 'middle';
        for (const b of visible) {
          const d = b.node.data;
          const label = d.node.label || d.spec?.title || d.node.type;
          const x = b.x * zoom + ox + 6;
          const room = b.w * zoom - 10;
          const y = b.y * zoom + oy + Math.min(b.h * zoom, 2 * size) / 2 + 1;
          ctx.fillText(fit(ctx, widths, label, room), x, y);
        }
      }
    });
  }, [store, props.dark, widths]);

  // Redrawn with the view (in the same frame React Flow moves its viewport), the scene and the theme.
  useViewChange(store, React.useCallback(() => draw(false), [draw]));
  React.useEffect(() => draw(), [scene, draw]);
  React.useEffect(() => () => window.clearTimeout(sharpLater.current), []);

  // Pointer events on the pane: a press on a drawn node drags or clicks it instead of panning.
  const propsRef = React.useRef(props);
  propsRef.current = props;
  React.useEffect(() => {
    const flowEl = canvas.current?.parentElement;
    if (!flowEl) {
      return;
    }
    const hit = (ev: PointerEvent): Box | null => {
      const target = ev.target as HTMLElement;
      if (!target.closest?.('.react-flow__pane') || target.closest('.react-flow__node, .react-flow__edge, .react-flow__handle, .react-flow__panel')) {
        return null;
      }
      const { x, y } = flow.screenToFlowPosition({ x: ev.clientX, y: ev.clientY }, { snapToGrid: false });
      const drawn = sceneRef.current.drawn;
      for (let i = drawn.length - 1; i >= 0; i--) {
        const b = drawn[i];
        if (x >= b.x && x <= b.x + b.w && y >= b.y && y <= b.y + b.h) {
          return b;
        }
      }
      return null;
    };
    let hovering = false;
    const onHover = (ev: PointerEvent) => {
      if (ev.buttons) {
        return;
      }
      const over = !!hit(ev);
      if (over !== hovering) {
        hovering = over;
        flowEl.classList.toggle('fo-far-hover', over);
      }
    };
    const onDown = (ev: PointerEvent) => {
      if (ev.button !== 0) {
        return;
      }
      const box = hit(ev);
      if (!box) {
        return;
      }
      // Ours: no pan (React Flow pans on the mouse events a prevented pointerdown never sends)
      // and no pane click.
      ev.preventDefault();
      ev.stopPropagation();
      const additive = ev.shiftKey || ev.ctrlKey || ev.metaKey;
      const { transform, snapToGrid, snapGrid } = store.getState() as { transform: Transform; snapToGrid: boolean; snapGrid: [number, number] };
      const zoom = transform[2];
      // Snapped as React Flow snaps a dragged DOM node.
      const snap = (v: number, i: 0 | 1) => (snapToGrid ? Math.round(v / snapGrid[i]) * snapGrid[i] : v);
      const { nodes } = propsRef.current;
      const moving = box.node.selected ? nodes.filter(n => n.selected) : [box.node];
      const origins = moving.map(n => ({ id: n.id, x: n.position.x, y: n.position.y }));
      const start = { x: ev.clientX, y: ev.clientY };
      let dragged = false;
      const move = (e: PointerEvent) => {
        const dx = e.clientX - start.x;
        const dy = e.clientY - start.y;
        if (!dragged && Math.hypot(dx, dy) < DRAG_SLOP) {
          return;
        }
        dragged = dragging.current = true;
        propsRef.current.onMove(origins.map(o => ({ id: o.id, x: snap(o.x + dx / zoom, 0), y: snap(o.y + dy / zoom, 1) })));
      };
      const up = (e: PointerEvent) => {
        if (dragged) {
          move(e); // where it was let go (the last move may not have been sent)
          dragging.current = false; // so the redraw of that move is sharp
        }
        window.removeEventListener('pointermove', move, true);
        window.removeEventListener('pointerup', up, true);
        // The click the browser sends next is ours too: React Flow would take it as a pane
        // click, which clears the selection.
        const swallow = (e: MouseEvent) => e.stopPropagation();
        window.addEventListener('click', swallow, { capture: true, once: true });
        window.setTimeout(() => window.removeEventListener('click', swallow, true), 0);
        if (!dragged) {
          propsRef.current.onNodeClick(box.id, additive);
        }
      };
      window.addEventListener('pointermove', move, true);
      window.addEventListener('pointerup', up, true);
    };
    flowEl.addEventListener('pointerdown', onDown, true);
    flowEl.addEventListener('pointermove', onHover, { passive: true });
    return () => {
      flowEl.removeEventListener('pointerdown', onDown, true);
      flowEl.removeEventListener('pointermove', onHover);
    };
  }, [store, flow]);

  return <canvas ref={canvas} className="fo-farview" data-testid="far-view" data-drawn={scene.drawn.length} />;
}

/** The label cut to the room it has, with an ellipsis; widths measured once per label. */
function fit(ctx: Context2D, widths: Map<string, number>, text: string, room: number): string {
  let width = widths.get(text);
  if (width === undefined) {
    width = ctx.measureText(text).width;
    widths.set(text, width);
  }
  if (width <= room) {
    return text;
  }
  const keep = Math.floor((text.length * (room - 8)) / width); // 8: about an ellipsis
  return keep > 0 ? text.slice(0, keep) + '…' : '';
}
