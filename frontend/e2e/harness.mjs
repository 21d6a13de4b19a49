// Browser-test harness: starts real exo processes and drives Debian's Chromium
// through playwright-core (no browser download). Each page is watched for
// console errors, failed requests and requests to other origins.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const frontendDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = path.resolve(frontendDir, '..');
export const outDir = path.resolve(process.env.EXO_TEST_OUTPUT ?? path.join(frontendDir, 'test-results'));
export const isCI = process.env.CI === 'true';
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Skips the test with a reason, except under CI=true, where a missing prerequisite fails it. */
export function skipOrFail(t, reason) {
  if (isCI) throw new Error(`${reason} (CI=true: this test may not be skipped)`);
  t.skip(reason);
}

export function fixturesDir() {
  if (process.env.EXO_FIXTURES) return path.resolve(process.env.EXO_FIXTURES);
  return path.resolve(repoRoot, '..', 'shared', 'fixtures');
}

/** Why the browser tests cannot run here, or null. */
export function missingPrerequisite() {
  if (!existsSync(chromiumPath)) return `no Chromium at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH)`;
  const stories = path.join(fixturesDir(), 'stories260K', 'stories260K-F32.gguf');
  if (!existsSync(stories)) return `fixture ${stories} is missing (set EXO_FIXTURES)`;
  return null;
}

let builtBinary = null;

/**
 * The exo binary under test: $EXO_BIN, or one built here from the working
 * tree (which embeds whatever frontend/dist holds, so build the frontend first).
 */
export function exoBinary() {
  if (process.env.EXO_BIN) {
    const bin = path.resolve(process.env.EXO_BIN);
    if (!existsSync(bin)) throw new Error(`EXO_BIN=${bin} does not exist`);
    return bin;
  }
  if (builtBinary) return builtBinary;
  if (!existsSync(path.join(frontendDir, 'dist', 'index.html'))) {
    throw new Error('frontend/dist/index.html is missing: run `npm run build` first (the binary embeds it)');
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'exo-e2e-bin-'));
  const bin = path.join(dir, 'exo');
  execFileSync('go', ['build', '-o', bin, '.'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  builtBinary = bin;
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return bin;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `exo serve` on loopback ports of its own and waits until its API
 * answers. Resolves to { base, proc, dataDir, logs(), stop(), kill() }.
 */
export async function startNode({ name = 'e2e', modelsDir, args = [], env = {}, dataDir } = {}) {
  const bin = exoBinary();
  const ownDir = !dataDir;
  dataDir ??= mkdtempSync(path.join(tmpdir(), `exo-e2e-${name}-`));
  const ports = {
    gossip: await freePort(),
    transport: await freePort(),
    raft: await freePort(),
  };
  const argv = [
    'serve',
    '--api-addr', '127.0.0.1:0',
    '--gossip-addr', `127.0.0.1:${ports.gossip}`,
    '--transport-addr', `127.0.0.1:${ports.transport}`,
    '--raft-addr', `127.0.0.1:${ports.raft}`,
    '--data-dir', dataDir,
    '--node-name', name,
    '--log-format', 'json',
    '--models-dir', modelsDir ?? path.join(fixturesDir(), 'stories260K'),
    ...args,
  ];
  // exo reads every EXO_* variable as configuration and refuses unknown keys, so the
  // harness's own (EXO_BIN, EXO_FIXTURES, ...) must not reach it.
  const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('EXO_')));
  const proc = spawn(bin, argv, { env: { ...childEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let base = null;
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: no "api listening" line within 20 s\n${out}`)), 20000);
    const onData = (chunk) => {
      out += chunk.toString();
      if (base) return;
      for (const line of out.split('\n')) {
        if (!line.includes('api listening')) continue;
        try {
          const rec = JSON.parse(line);
          base = `${rec.tls ? 'https' : 'http'}://${rec.addr}`;
          clearTimeout(timer);
          resolve();
        } catch {
          // a partial line; the next chunk completes it
        }
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${name}: exo exited (${code ?? sig}) before listening\n${out}`));
    });
  });
  await ready;
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const node = {
    name,
    base,
    proc,
    dataDir,
    ports,
    gossipAddr: `127.0.0.1:${ports.gossip}`,
    logs: () => out,
    exited,
    /** SIGTERM, then SIGKILL after 10 s. */
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(t);
      }
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
  return node;
}

/** Launches Chromium with a fresh profile. Resolves to { context, close() }. */
export async function launchBrowser() {
  const profile = mkdtempSync(path.join(tmpdir(), 'exo-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Opens a page on `base` that records what a careful reviewer would check:
 * console errors, uncaught exceptions, failed requests, HTTP errors, and any
 * request to another origin (which is also blocked, so nothing leaves).
 */
export async function watchedPage(context, base) {
  const page = await context.newPage();
  const origin = new URL(base).origin;
  const seen = { console: [], pageErrors: [], failed: [], httpErrors: [], foreign: [], requests: [] };
  await page.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if ((url.protocol === 'http:' || url.protocol === 'https:' || url.protocol === 'ws:' || url.protocol === 'wss:') && url.origin !== origin) {
      seen.foreign.push(url.href);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error') seen.console.push({ text: msg.text(), url: msg.location()?.url ?? '' });
  });
  page.on('pageerror', (err) => seen.pageErrors.push(String(err)));
  page.on('request', (req) => seen.requests.push(`${req.method()} ${req.url()}`));
  page.on('requestfailed', (req) => seen.failed.push({ url: req.url(), method: req.method(), error: req.failure()?.errorText ?? '' }));
  page.on('response', (res) => {
    if (res.status() >= 400) seen.httpErrors.push({ url: res.url(), status: res.status() });
  });
  return { page, seen };
}

/** Endpoints a node may lack (cluster, model store): the dashboard probes them and shows a state. */
export const optionalEndpoints = ['/api/v1/nodes', '/api/v1/cluster', '/api/v1/instances', '/api/v1/models', '/api/v1/placement'];

/** Answers that are data, not failures: a missing optional endpoint, and /readyz saying "not yet". */
function isExpectedStatus(url, status) {
  const p = new URL(url).pathname;
  return (status === 404 && optionalEndpoints.includes(p)) || (status === 503 && p === '/readyz');
}

/**
 * Asserts a clean page: no console errors, no exceptions, no foreign requests,
 * no failed requests and no HTTP errors — except 404s of optional endpoints and
 * a 503 from /readyz (and Chromium's console line for each), and failures `allowFailed` accepts
 * (a reply the test stopped on purpose).
 */
export function assertClean(assert, seen, { allowFailed = () => false } = {}) {
  assert.deepEqual(seen.foreign, [], 'requests to another origin');
  assert.deepEqual(seen.pageErrors, [], 'uncaught exceptions');
  const http = seen.httpErrors.filter((e) => !isExpectedStatus(e.url, e.status));
  assert.deepEqual(http, [], 'HTTP errors');
  const failed = seen.failed.filter((f) => !allowFailed(f));
  assert.deepEqual(failed, [], 'failed requests');
  // Chromium logs every HTTP error answer as a console error; the expected ones are not errors here.
  const consoleErrors = seen.console.filter((c) => {
    const m = /status of (\d{3})/.exec(c.text);
    return !(m && c.url && isExpectedStatus(c.url, Number(m[1])));
  });
  assert.deepEqual(consoleErrors, [], 'console errors');
}

export async function screenshot(page, name) {
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
