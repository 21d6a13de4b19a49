// The dashboard against a real 3-node cluster (1 master + 2 workers), started
// as processes. Runs once the binary has cluster support (GET /api/v1/nodes
// answers 200); until then every test here skips and says why.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { abortedChat, chatAndStop } from './flows.mjs';
import { assertClean, launchBrowser, missingPrerequisite, screenshot, skipOrFail, startNode, watchedPage } from './harness.mjs';

const model = 'stories260K-F32';

async function getJSON(base, p) {
  const res = await fetch(base + p);
  return { status: res.status, body: res.status === 200 ? await res.json() : null };
}

async function until(what, fn, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

describe('three-node cluster', { concurrency: false }, () => {
  const missing = missingPrerequisite();
  let unsupported = null;
  const nodes = [];
  let master;
  let browser;
  let tokenDir;

  before(async () => {
    if (missing) return;
    master = await startNode({ name: 'alpha' });
    nodes.push(master);
    const probe = await getJSON(master.base, '/api/v1/nodes');
    if (probe.status !== 200) {
      unsupported = `this exo has no cluster support yet: GET /api/v1/nodes answered ${probe.status}`;
      return;
    }
    const res = await fetch(`${master.base}/api/v1/cluster/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ttl: '1h' }),
    });
    assert.equal(res.status, 201, `POST /api/v1/cluster/token: HTTP ${res.status}`);
    const { token } = await res.json();
    tokenDir = mkdtempSync(path.join(tmpdir(), 'exo-e2e-token-'));
    const tokenFile = path.join(tokenDir, 'token');
    writeFileSync(tokenFile, token, { mode: 0o600 });
    for (const name of ['beta', 'gamma']) {
      nodes.push(
        await startNode({ name, args: ['--roles', 'worker,api', '--join', master.gossipAddr, '--token-file', tokenFile] }),
      );
    }
    // The page shows what the API says when it loads: wait for a settled cluster first.
    await until('three alive members and a leader', async () => {
      const { body } = await getJSON(master.base, '/api/v1/nodes');
      return body?.nodes?.filter((n) => n.status === 'alive').length === 3 && body.nodes.some((n) => n.leader);
    });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    for (const n of nodes.reverse()) await n.stop();
    if (tokenDir) rmSync(tokenDir, { recursive: true, force: true });
  });

  /** Whether the test cannot run here (and has said so). */
  const skip = (t) => {
    if (missing) {
      skipOrFail(t, missing);
      return true;
    }
    if (unsupported) {
      t.skip(unsupported);
      return true;
    }
    return false;
  };

  test('shows all three nodes, the leader and the measured links', async (t) => {
    if (skip(t)) return;
    // Every distinct pair of nodes that /api/v1/cluster reports (its links, and the answering
    // node's transport peers with their probes) is drawn with its figures. Peers are probed once
    // the stage hosts have dialled them: wait until the count is measured and settled.
    const reported = async () => {
      const { body } = await getJSON(master.base, '/api/v1/cluster');
      const self = body.self?.id;
      return new Set([
        ...(body.links ?? []).map((l) => [l.from, l.to].sort().join('|')),
        ...(self ? (body.transport ?? []).filter((l) => l.node).map((l) => [self, l.node].sort().join('|')) : []),
      ]).size;
    };
    let links = await reported();
    for (let i = 0; i < 60; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const again = await reported();
      if (again > 0 && again === links) break;
      links = again;
    }
    assert.ok(links > 0, 'no link between the cluster nodes was measured within 30 s');
    const { page, seen } = await watchedPage(browser.context, master.base);
    await page.goto(`${master.base}/#/cluster`);
    await page.locator('[data-testid=connection][data-state=open]').waitFor();
    for (const name of ['alpha', 'beta', 'gamma']) await page.locator(`[data-testid=node-card][data-node="${name}"]`).waitFor();
    assert.equal(await page.getByTestId('node-card').count(), 3);
    assert.equal(await page.locator('[data-node="alpha"] .badge.leader').count(), 1, 'alpha (the only master) leads');
    const desc = (await page.locator('#topo-desc').textContent()) ?? '';
    assert.match(desc, new RegExp(`3 nodes; ${links} measured links?`));
    assert.match(desc, /\d ms/, 'links carry their measured latency');
    await screenshot(page, 'cluster-topology');
    await page.getByRole('link', { name: 'Nodes' }).click();
    // The view fetches the nodes when it opens: wait for its rows before counting them (a count
    // taken at once found the table still empty).
    const rows = page.locator('[data-testid=nodes-table] tbody tr');
    await rows.nth(2).waitFor();
    assert.equal(await rows.count(), 3);
    await screenshot(page, 'cluster-nodes');
    await page.close();
    assertClean(assert, seen);
  });

  test('creating an instance shows the placement preview, then the instance and its stages', async (t) => {
    if (skip(t)) return;
    const { page, seen } = await watchedPage(browser.context, master.base);
    await page.goto(`${master.base}/#/instances`);
    await page.getByLabel('Model').selectOption(model);
    await page.getByLabel('Minimum nodes').fill('3');
    await page.getByRole('button', { name: 'Preview placement' }).click();
    const preview = page.getByTestId('placement-preview');
    await preview.waitFor();
    assert.equal(await preview.locator('tbody tr').count(), 3, 'three stages planned');
    assert.match(await preview.textContent(), /Predicted: [\d.]+ tok\/s per sequence/);
    await screenshot(page, 'cluster-instance-preview');
    await preview.getByRole('button', { name: 'Create instance' }).click();
    const item = page.getByTestId('instance').filter({ hasText: model });
    await item.waitFor();
    assert.equal(await item.locator('.legend li').count(), 3, 'the instance runs three stages');
    await screenshot(page, 'cluster-instance-created');
    await page.close();
    assertClean(assert, seen);
  });

  test('a chat through the cluster streams tokens and stops on request', async (t) => {
    if (skip(t)) return;
    const { page, seen } = await watchedPage(browser.context, master.base);
    const tokens = await chatAndStop(page, master.base, model);
    assert.ok(tokens > 0 && tokens < 400, `stopped after ${tokens} tokens`);
    await screenshot(page, 'cluster-chat-stopped');
    await page.close();
    assertClean(assert, seen, { allowFailed: abortedChat });
  });

  test('a killed node leaves the view within seconds', async (t) => {
    if (skip(t)) return;
    const { page, seen } = await watchedPage(browser.context, master.base);
    await page.goto(`${master.base}/#/cluster`);
    const gamma = page.locator('[data-testid=node-card][data-node="gamma"]');
    await gamma.waitFor();
    const victim = nodes.find((n) => n.name === 'gamma');
    const killedAt = Date.now();
    await victim.kill();
    // Gone from the view, or shown as failed/left: either way no longer a live member.
    await page.waitForFunction(
      () => {
        const card = document.querySelector('[data-testid=node-card][data-node="gamma"]');
        return !card || /\b(failed|left)\b/.test(card.querySelector('.status')?.textContent ?? '');
      },
      null,
      { timeout: 15000 },
    );
    t.diagnostic(`the dashboard showed gamma gone after ${Date.now() - killedAt} ms`);
    await screenshot(page, 'cluster-node-killed');
    await page.close();
    assertClean(assert, seen);
  });
});
