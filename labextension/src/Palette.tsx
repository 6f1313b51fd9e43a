/**
 * The node palette: the server's node catalogue grouped Triggers / AI / Actions / Control Flow,
 * searchable. Drag an item onto the canvas, or double-click it (or press Enter on it) to add it
 * in the middle of the view.
 */
import * as React from 'react';
import type { NodeSpec } from './api';

const GROUPS = ['Triggers', 'AI', 'Actions', 'Control Flow'];

export function Palette(props: { specs: NodeSpec[]; onAdd: (spec: NodeSpec) => void; compact?: boolean }): JSX.Element {
  const [query, setQuery] = React.useState('');
  const [open, setOpen] = React.useState(true);
  const q = query.trim().toLowerCase();
  const shown = props.specs.filter(
    s => !q || s.type.toLowerCase().includes(q) || s.title.toLowerCase().includes(q) || s.description.toLowerCase().includes(q)
  );
  const groups = [...GROUPS, ...new Set(props.specs.map(s => s.category).filter(c => !GROUPS.includes(c)))];
  if (!open) {
    return (
      <div className="fo-palette fo-palette-closed" data-testid="palette">
        <button className="fo-btn" onClick={() => setOpen(true)} title="Show the node palette">
          +
        </button>
      </div>
    );
  }
  return (
    <div className="fo-palette" data-testid="palette">
      <div className="fo-palette-head">
        <input
          data-testid="palette-search"
          type="search"
          placeholder="Search nodes…"
          value={query}
          onChange={e => setQuery(e.target.value)}
        />
        {props.compact ? (
          <button className="fo-btn" onClick={() => setOpen(false)} title="Hide the palette">
            ‹
          </button>
        ) : null}
      </div>
      {groups.map(group => {
        const items = shown.filter(s => s.category === group);
        if (!items.length) {
          return null;
        }
        return (
          <div key={group} className="fo-palette-group" data-testid={`palette-group-${group}`}>
            <div className="fo-palette-group-name">{group}</div>
            {items.map(spec => (
              <div
                key={spec.type}
                className="fo-palette-item"
                data-testid={`palette-item-${spec.type}`}
                draggable
                tabIndex={0}
                title={`${spec.description}\n(drag onto the canvas, or double-click)`}
                onDragStart={ev => {
                  ev.dataTransfer.setData('application/x-floworch-node', spec.type);
                  ev.dataTransfer.effectAllowed = 'copy';
                }}
                onDoubleClick={() => props.onAdd(spec)}
                onKeyDown={ev => ev.key === 'Enter' && props.onAdd(spec)}
              >
                <span className="fo-palette-title">{spec.title}</span>
                <span className="fo-palette-type">{spec.type}</span>
              </div>
            ))}
          </div>
        );
      })}
      {shown.length === 0 ? <div className="fo-muted">No node matches “{query}”.</div> : null}
    </div>
  );
}
