import { defineConfig, type Plugin } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { svelteTesting } from '@testing-library/svelte/vite';

// The exo node serving the API during `npm run dev`.
const devTarget = 'http://127.0.0.1:52415';
const proxied = ['/healthz', '/readyz', '/metrics', '/v1', '/api'];

// dist/.keep is committed so that the Go side's `//go:embed all:frontend/dist`
// compiles before any frontend build. Vite empties dist/ on every build, so
// emit the (empty) placeholder back into the bundle.
function keepPlaceholder(): Plugin {
  return {
    name: 'exo-keep-placeholder',
    apply: 'build',
    generateBundle() {
      this.emitFile({ type: 'asset', fileName: '.keep', source: '' });
    },
  };
}

export default defineConfig({
  plugins: [svelte(), svelteTesting(), keepPlaceholder()],
  server: {
    proxy: Object.fromEntries(proxied.map((p) => [p, { target: devTarget, changeOrigin: false }])),
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    reportCompressedSize: true,
  },
  test: {
    environment: 'happy-dom',
    include: ['src/**/*.test.ts'],
    restoreMocks: true,
    unstubGlobals: true,
  },
});
