/** The flow's validation problems, listed under the canvas; a click selects the node. */
import * as React from 'react';
import type { Problem } from './api';

export function ProblemsList(props: { problems: Problem[]; checked: boolean; onSelect: (id: string) => void }): JSX.Element {
  return (
    <div className={`fo-problems${props.problems.length ? '' : ' fo-problems-none'}`} data-testid="problems">
      {!props.checked ? <span className="fo-muted">not checked yet: the server cannot be reached</span> : null}
      {props.problems.length === 0 ? (
        props.checked ? <span className="fo-ok">✓ valid</span> : null
      ) : (
        <>
          <span className="fo-problems-count">{props.problems.length} problem(s)</span>
          {props.problems.map((p, i) => (
            <button key={i} className="fo-problem" onClick={() => p.node && props.onSelect(p.node)} title={p.hint ?? ''}>
              <b>{p.location}</b>: {p.message}
              {p.hint ? <i> — {p.hint}</i> : null}
            </button>
          ))}
        </>
      )}
    </div>
  );
}

