// `npm run lint`: tsc --noEmit checks the types, this checks the code for bugs and React's rules of hooks.
import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/', 'node_modules/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  reactHooks.configs['recommended-latest'],
  {
    rules: {
      // JSON from the server and values in the shared Yjs maps are typed `any` where they enter
      // (api.ts, sharedflow.ts, document.ts), on purpose: the code past those edges is typed.
      '@typescript-eslint/no-explicit-any': 'off'
    }
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } }
  }
);
