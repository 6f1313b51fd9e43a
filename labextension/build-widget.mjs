// Bundles the notebook widget's ESM (kernel/floworch/static/canvas.js, with its CSS beside it):
// the same canvas as the JupyterLab document, with React and yjs inside, for anywidget.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/widget.tsx'],
  bundle: true,
  format: 'esm',
  minify: true,
  target: 'es2020',
  outfile: '../kernel/floworch/static/canvas.js',
  loader: { '.css': 'css' },
  inject: [],
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' }
});
await build({
  entryPoints: ['style/widget.css'],
  bundle: true,
  minify: true,
  outfile: '../kernel/floworch/static/canvas.css',
  logLevel: 'warning'
});
