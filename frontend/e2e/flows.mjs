// Browser flows shared by the single-node and cluster tests.
import assert from 'node:assert/strict';

/**
 * Starts a reply in the chat view, waits until some of it has arrived, presses
 * Stop, and checks that nothing more arrives. The network is throttled with
 * DevTools so that a fast model's reply is still on the wire when Stop is
 * pressed. Returns the number of tokens shown.
 */
export async function chatAndStop(page, base, model) {
  await page.goto(`${base}/#/chat`);
  await page.getByTestId('chat-model').selectOption(model);
  await page.getByTestId('chat-max-tokens').fill('');
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: 4000, uploadThroughput: -1 });
  try {
    await page.getByTestId('chat-input').fill('Tell me a story.');
    await page.getByTestId('chat-send').click();
    const reply = page.locator('[data-testid=turn-assistant] .md').last();
    await page.waitForFunction(
      () => {
        const all = document.querySelectorAll('[data-testid=turn-assistant] .md');
        return (all[all.length - 1]?.textContent ?? '').length > 40;
      },
      null,
      { timeout: 30000 },
    );
    await page.getByTestId('chat-stop').click();
    await page.getByTestId('chat-stopped').last().waitFor();
    const atStop = await reply.innerText();
    await page.waitForTimeout(1500);
    assert.equal(await reply.innerText(), atStop, 'nothing arrives after Stop');
    await page.getByTestId('chat-send').waitFor();
    return Number(await page.getByTestId('tokens').last().innerText());
  } finally {
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();
  }
}

/** The stop flow's one deliberate failure: the aborted completion request. */
export const abortedChat = (f) => f.method === 'POST' && new URL(f.url).pathname === '/v1/chat/completions' && /ABORTED/.test(f.error);
