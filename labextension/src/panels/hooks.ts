/** React hooks the panels share: the width of an element, and an id unique in the page. */
import * as React from 'react';

export function useWidth<T extends HTMLElement>(fallback = 800): [React.RefObject<T>, number] {
  const ref = React.useRef<T>(null);
  const [width, setWidth] = React.useState(fallback);
  React.useLayoutEffect(() => {
    const el = ref.current;
    if (!el) {
      return;
    }
    if (el.clientWidth > 0) {
      setWidth(el.clientWidth);
    }
    const observer = new ResizeObserver(entries => {
      const w = Math.floor(entries[0]?.contentRect.width ?? 0);
      if (w > 0) {
        setWidth(w);
      }
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

let uid = 0;
export function useUid(prefix: string): string {
  const ref = React.useRef<string>('');
  if (!ref.current) {
    ref.current = `${prefix}-${++uid}`;
  }
  return ref.current;
}
