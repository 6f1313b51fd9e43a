/**
 * The trace of a run as a Gantt chart: one row per node, one bar per segment (lanes inside a row
 * for overlapping ones). It is plain SVG drawn here; there is no Plotly in the browser.
 */
import * as React from 'react';
import type { NodeRun } from '../api';
import { fmtClock, fmtDuration, toMs } from './format';
import { useUid, useWidth } from './hooks';
import type { Segment } from './session';

const LABEL_W = 190;
const AXIS_H = 30;
const LANE_H = 18;
const BAR_H = 12;
const ROW_PAD = 4;
const RIGHT_PAD = 18;
const NICE_STEPS = [
  1, 2, 5, 10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
  1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000, 172_800_000, 604_800_000
];

interface Bar {
  seg: Segment;
  start: number;
  end: number;
  x0: number;
  x1: number;
  lane: number;
}

function segmentTitle(seg: Segment, start: number, end: number, open: boolean): string {
  const lines = [
    `${seg.node}${seg.type ? ` (${seg.type})` : ''}`,
    `${seg.kind}${seg.kind === 'activity' ? `, attempt ${seg.attempt}` : ''}${seg.iteration ? `, iteration ${seg.iteration}` : ''}: ${seg.status}`,
    `start ${fmtClock(start)}`,
    seg.kind === 'skipped' ? 'never ran' : `end ${fmtClock(end)}${open ? ' (still open)' : ''}`,
    `duration ${fmtDuration(end - start)}`
  ];
  if (seg.error) {
    lines.push(`error: ${seg.error}`);
  }
  return lines.join('\n');
}

export function Gantt(props: {
  segments: Segment[];
  nodes: NodeRun[];
  loaded: boolean;
  running: boolean;
  selected: string | null;
  onSelect: (node: string) => void;
}): JSX.Element {
  const [ref, width] = useWidth<HTMLDivElement>();
  const hatch = useUid('fo-gantt-hatch');
  const now = Date.now();

  // Rows: the plan's order (run.nodes), then any node only the trace knows.
  const order: string[] = [];
  const types: { [node: string]: string } = {};
  const nodeStatus: { [node: string]: string } = {};
  props.nodes.forEach(n => {
    order.push(n.node);
    types[n.node] = n.type ?? '';
    nodeStatus[n.node] = n.status;
  });
  props.segments.forEach(s => {
    if (!(s.node in types)) {
      order.push(s.node);
      types[s.node] = s.type;
    }
  });

  let t0 = Infinity;
  let t1 = -Infinity;
  const timed = props.segments.map(seg => {
    const start = toMs(seg.started) ?? toMs(seg.scheduled);
    let end = toMs(seg.ended);
    if (start !== null && end === null) {
      end = props.running && seg.status !== 'skipped' ? now : start;
    }
    if (start !== null) {
      t0 = Math.min(t0, start);
      t1 = Math.max(t1, end ?? start);
    }
    return { seg, start, end };
  });
  if (props.running && Number.isFinite(t0)) {
    t1 = Math.max(t1, now);
  }
  const hasTime = Number.isFinite(t0);
  if (!hasTime) {
    t0 = now;
    t1 = now + 1000;
  }
  if (t1 - t0 < 1) {
    t1 = t0 + 1;
  }
  const plotW = Math.max(120, width - LABEL_W - RIGHT_PAD);
  const span = t1 - t0;
  const x = (t: number) => LABEL_W + ((t - t0) / span) * plotW;

  // Bars, with lanes inside a row so that overlapping segments (parallel iterations) both show.
  const byNode: { [node: string]: Bar[] } = {};
  timed.forEach(({ seg, start, end }) => {
    if (start === null) {
      return;
    }
    const x0 = x(start);
    const x1 = Math.max(x(end ?? start), x0 + 3);
    (byNode[seg.node] = byNode[seg.node] ?? []).push({ seg, start, end: end ?? start, x0, x1, lane: 0 });
  });
  let y = AXIS_H;
  const rows = order.map(node => {
    const bars = (byNode[node] ?? []).sort((a, b) => a.x0 - b.x0);
    const laneEnds: number[] = [];
    bars.forEach(bar => {
      let lane = laneEnds.findIndex(end => end + 1 <= bar.x0);
      if (lane < 0) {
        lane = laneEnds.length;
        laneEnds.push(bar.x1);
      } else {
        laneEnds[lane] = bar.x1;
      }
      bar.lane = lane;
    });
    const height = Math.max(1, laneEnds.length) * LANE_H + ROW_PAD * 2;
    const row = { node, y, height, bars };
    y += height;
    return row;
  });
  const height = y + 4;

  let step = NICE_STEPS[NICE_STEPS.length - 1];
  const maxTicks = Math.max(2, Math.floor(plotW / 90));
  for (const s of NICE_STEPS) {
    if (span / s <= maxTicks) {
      step = s;
      break;
    }
  }
  const ticks: number[] = [];
  for (let offset = 0; offset <= span + 0.5; offset += step) {
    ticks.push(offset);
  }

  const select = (node: string) => props.onSelect(node);
  return (
    <div className="fo-gantt-wrap" ref={ref}>
      {!hasTime ? (
        <div className="fo-p-empty" data-testid="gantt-empty">
          {props.loaded ? 'Nothing has run yet.' : 'Reading the trace…'}
        </div>
      ) : null}
      <svg
        className="fo-gantt"
        data-testid="gantt"
        data-segments={props.segments.length}
        width={Math.max(width, LABEL_W + 120 + RIGHT_PAD)}
        height={height}
        role="img"
        aria-label="Trace of the run: one row per node, one bar per segment"
      >
        <defs>
          <pattern id={hatch} width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
            <rect width="3" height="6" className="fo-gantt-hatch-line" />
          </pattern>
        </defs>
        <g className="fo-gantt-axis" data-testid="gantt-axis">
          <text className="fo-gantt-clock" x={LABEL_W} y={11}>
            {hasTime ? fmtClock(t0) : ''}
          </text>
          <text className="fo-gantt-clock" x={LABEL_W + plotW} y={11} textAnchor="end">
            {hasTime ? fmtClock(t1) : ''}
          </text>
          <line className="fo-gantt-axis-line" x1={LABEL_W} x2={LABEL_W + plotW} y1={AXIS_H - 1} y2={AXIS_H - 1} />
          {ticks.map(offset => (
            <g key={offset} className="fo-gantt-tick">
              <line className="fo-gantt-grid" x1={x(t0 + offset)} x2={x(t0 + offset)} y1={AXIS_H - 5} y2={height} />
              <text x={x(t0 + offset)} y={AXIS_H - 8} textAnchor={offset === 0 ? 'start' : x(t0 + offset) > LABEL_W + plotW - 24 ? 'end' : 'middle'}>
                <title>{fmtClock(t0 + offset)}</title>
                {offset === 0 ? '0' : `+${fmtDuration(offset)}`}
              </text>
            </g>
          ))}
        </g>
        {rows.map(row => (
          <g
            key={row.node}
            className={`fo-gantt-row${props.selected === row.node ? ' fo-gantt-row-selected' : ''}`}
            data-testid="gantt-row"
            data-node={row.node}
            data-node-status={nodeStatus[row.node] ?? ''}
            role="button"
            tabIndex={0}
            aria-label={`Inspect node ${row.node}`}
            onClick={() => select(row.node)}
            onKeyDown={e => {
              if (e.key === 'Enter' || e.key === ' ') {
                e.preventDefault();
                select(row.node);
              }
            }}
          >
            <rect className="fo-gantt-rowbg" x={0} y={row.y} width={LABEL_W + plotW + RIGHT_PAD} height={row.height} />
            <circle className={`fo-gantt-dot fo-gstat-${nodeStatus[row.node] ?? 'idle'}`} cx={10} cy={row.y + ROW_PAD + LANE_H / 2} r={4} />
            <text className="fo-gantt-label" x={20} y={row.y + ROW_PAD + LANE_H / 2 + 4}>
              <title>{`${row.node}${types[row.node] ? ` (${types[row.node]})` : ''}${nodeStatus[row.node] ? `: ${nodeStatus[row.node]}` : ''}`}</title>
              {row.node.length > 22 ? `${row.node.slice(0, 21)}…` : row.node}
              <tspan className="fo-gantt-type" dx={6}>
                {(types[row.node] ?? '').length > 14 ? `${types[row.node].slice(0, 13)}…` : types[row.node]}
              </tspan>
            </text>
            {row.bars.map((bar, i) => {
              const { seg } = bar;
              const by = row.y + ROW_PAD + bar.lane * LANE_H + (LANE_H - BAR_H) / 2;
              const w = bar.x1 - bar.x0;
              const title = segmentTitle(seg, bar.start, bar.end, !!seg.ended_open || seg.ended === null);
              return (
                <g
                  key={i}
                  className={`fo-gantt-bar fo-gstat-${seg.status} fo-gkind-${seg.kind}`}
                  data-testid="gantt-bar"
                  data-node={seg.node}
                  data-status={seg.status}
                  data-attempt={seg.attempt}
                  data-kind={seg.kind}
                  data-iteration={seg.iteration ?? ''}
                  aria-label={title}
                >
                  <title>{title}</title>
                  <rect x={bar.x0} y={by} width={w} height={BAR_H} rx={2} />
                  {seg.kind === 'timer' || seg.kind === 'approval' ? (
                    <rect className="fo-gantt-hatch" x={bar.x0} y={by} width={w} height={BAR_H} rx={2} style={{ fill: `url(#${hatch})` }} />
                  ) : null}
                  {w > 40 && seg.kind !== 'trigger' ? (
                    <text className="fo-gantt-bar-text" x={bar.x0 + 4} y={by + BAR_H - 2.5}>
                      {seg.kind === 'activity' ? `#${seg.attempt}` : seg.kind}
                      {w > 90 ? ` ${fmtDuration(bar.end - bar.start)}` : ''}
                    </text>
                  ) : null}
                </g>
              );
            })}
          </g>
        ))}
        {props.running && hasTime ? <line className="fo-gantt-now" x1={x(now)} x2={x(now)} y1={AXIS_H - 4} y2={height} /> : null}
      </svg>
      <div className="fo-gantt-legend">
        {['success', 'failed', 'running', 'waiting', 'cancelled', 'skipped'].map(s => (
          <span key={s} className="fo-gantt-legend-item">
            <i className={`fo-gantt-swatch fo-gstat-${s}`} />
            {s}
          </span>
        ))}
        <span className="fo-gantt-legend-item">
          <i className="fo-gantt-swatch fo-gantt-swatch-hatch" />
          timer / approval wait
        </span>
        <span className="fo-p-muted">click a row to inspect its node</span>
      </div>
    </div>
  );
}
