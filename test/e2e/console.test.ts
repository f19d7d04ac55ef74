// The web console in a real headless Chromium (Debian's, driven by playwright-core) against a
// real Kiln: sign in, a repository and a rule with the live preview, an inline build whose log
// streams and steps complete, the tag with the registry's digest, a cancel, and a namespace token
// that cannot see another namespace. Screenshots of the main pages go to test-results/console/.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestKiln, type TestKiln } from '../support/kiln';
import { fetchManifest } from '../support/registry';

/** The element's text, '' while it is not there: for expect.poll. */
const text = (loc: Locator) => () => loc.innerText({ timeout: 1000 }).catch(() => '');

const SHOTS = path.resolve(__dirname, '../../test-results/console');

describe('web console', () => {
  let kiln: TestKiln;
  let browser: Browser;
  let page: Page;
  let repoId: string;
  const shot = (name: string, p: Page = page) => p.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    kiln = await startTestKiln();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  });
  afterAll(async () => {
    await browser?.close();
    await kiln?.close();
    console.log(`console screenshots: ${SHOTS}`);
  });

  async function signIn(p: Page, token: string) {
    await p.goto(`${kiln.url}/`);
    await expect.poll(() => p.url()).toContain('/login');
    await p.getByLabel('API token').fill(token);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.waitForURL(/\/namespaces$/);
  }

  it('signs in with a token into an HttpOnly, SameSite=Strict session; a bad token is refused', async () => {
    await page.goto(`${kiln.url}/login`);
    await shot('login');
    await page.getByLabel('API token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(text(page.getByRole('alert')), { timeout: 10_000 }).toContain('not valid');
    await signIn(page, kiln.token);
    const [cookie] = await page.context().cookies();
    expect(cookie).toMatchObject({ name: 'kiln_session', httpOnly: true, sameSite: 'Strict' });
    expect(cookie!.value).not.toContain(kiln.token);
    // A write without the CSRF token is refused even with the session cookie.
    const forged = await page.request.post(`${kiln.url}/namespaces`, { form: { name: 'forged' } });
    expect(forged.status()).toBe(403);
  });

  it('creates a namespace and a repository (webhook secret shown once) and a rule with the live preview', async () => {
    await page.getByLabel('Name').fill('shop');
    await page.getByRole('button', { name: 'Create namespace' }).click();
    await page.waitForURL(/\/namespaces\/shop$/);
    await page.getByLabel('Name', { exact: true }).fill('web');
    await page.getByLabel('Code source').selectOption('github');
    await page.getByLabel('Clone URL').fill('https://github.com/acme/web.git');
    await page.getByRole('button', { name: 'Create repository' }).click();
    await expect.poll(text(page.locator('#webhook-secret')), { timeout: 10_000 }).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    await expect.poll(text(page.locator('#webhook-url')), { timeout: 10_000 }).toMatch(/\/webhooks\/github$/);
    await shot('repository-created');

    const form = page.locator('form[action$="/rules"]');
    await form.getByLabel('Match').fill('release-(?<imageTag>\\w*)');
    await form.getByLabel('Template 1').fill('${imageTag}');
    await form.getByLabel('Build time').first().selectOption('yyyyMMdd');
    await form.getByLabel('Preview with ref').fill('release-v7');
    const preview = form.locator('output.preview');
    await expect.poll(text(preview), { timeout: 10_000 }).toMatch(/Builds branch release-v7 → v7-\d{8}/);
    await form.getByLabel('Preview with ref').fill('main');
    await expect.poll(text(preview), { timeout: 10_000 }).toMatch(/Does not build branch main: branch "main" does not match the pattern/);
    await form.getByLabel('Template 1').fill('.${imageTag}');
    await form.getByLabel('Preview with ref').fill('release-v7');
    await expect.poll(text(preview), { timeout: 10_000 }).toMatch(/Does not build branch release-v7: .*not a valid|Does not build branch release-v7: The rule is not valid/);
    await form.getByLabel('Template 1').fill('${imageTag}');
    await expect.poll(text(preview), { timeout: 10_000 }).toMatch(/Builds branch release-v7/);
    await shot('rule-preview');
    await form.getByRole('button', { name: 'Create rule' }).click();
    await expect.poll(text(page.locator('details.rule summary')), { timeout: 10_000 }).toContain('release-(?<imageTag>\\w*)');
    repoId = /\/repositories\/([0-9a-f-]{36})/.exec(page.url())![1]!;
    const rules = await (await kiln.api(`/api/v1/repositories/${repoId}/rules`)).json();
    expect(rules.items).toHaveLength(1);
    expect(rules.items[0].tags).toEqual([{ template: '${imageTag}', buildTime: 'yyyyMMdd' }]);
  });

  it('starts an inline build, streams its log, completes its steps and shows the tag with the registry digest', async () => {
    await page.goto(`${kiln.url}/builds/new?repository=shop/web`);
    await page.getByLabel('Tags (comma-separated)').fill('v1');
    await page.getByLabel('Dockerfile').fill(
      `FROM ${kiln.registry}/base/busybox\nRUN echo step-one > /one\nRUN for i in 1 2 3; do echo "tick $i"; sleep 1; done\n`,
    );
    await page.getByLabel('no cache').check();
    await page.getByRole('button', { name: 'Start build' }).click();
    await page.waitForURL(/\/builds\/[0-9a-f-]{36}$/);
    const buildId = page.url().split('/').pop()!;
    // The log streams while the build runs: a tick shows before the build has ended.
    await expect.poll(text(page.locator('#log')), { timeout: 120_000 }).toContain('tick 1');
    const statusWhileTicking = await page.locator('#build-status .status').first().textContent();
    await expect.poll(text(page.locator('#log')), { timeout: 60_000 }).toContain('tick 3');
    await expect.poll(text(page.locator('#build-status .status').first()), { timeout: 60_000 }).toBe('succeeded');
    expect(['running', 'queued', 'succeeded']).toContain(statusWhileTicking);
    await expect.poll(text(page.locator('#log-state')), { timeout: 10_000 }).toContain('Log complete (succeeded)');
    const steps = page.locator('.platform .steps li');
    expect(await steps.count()).toBeGreaterThanOrEqual(2);
    await expect.poll(() => page.locator('.platform .steps li.running').count(), { timeout: 10_000 }).toBe(0);
    await expect.poll(async () => (await page.locator('.platform .steps li', { hasText: 'RUN for i in' }).getAttribute('class')) ?? '', { timeout: 10_000 }).toMatch(/done/);
    const index = (await fetchManifest(kiln.registry, 'shop/web', 'v1'))!;
    await expect.poll(text(page.locator('#manifest-digest')), { timeout: 10_000 }).toBe(index.digest);
    // Log search keeps only matching lines.
    await page.getByPlaceholder('Search the log').fill('tick 2');
    await expect.poll(text(page.locator('#log-hits')), { timeout: 10_000 }).toMatch(/^[1-9]\d* matching lines$/);
    await page.getByPlaceholder('Search the log').fill('');
    await shot('build');
    expect(await page.getByRole('button', { name: 'Cancel build' }).count()).toBe(0);
    const download = await page.request.get(`${kiln.url}/builds/${buildId}/log.txt`);
    expect(await download.text()).toContain('tick 3');

    await page.goto(`${kiln.url}/repositories/${repoId}`);
    const row = page.locator('tr[data-tag="v1"]');
    await expect.poll(text(row.locator('.digest')), { timeout: 10_000 }).toBe(index.digest);
    await expect.poll(text(row), { timeout: 10_000 }).toContain('manual build');
    await expect.poll(text(row), { timeout: 10_000 }).toContain('linux/amd64');
    await expect.poll(text(row), { timeout: 10_000 }).toContain(`docker pull ${kiln.registry}/shop/web:v1`);
    await shot('repository');

    await page.goto(`${kiln.url}/builds?repository=shop/web&status=succeeded`);
    await expect.poll(() => page.locator('#build-rows tr').count(), { timeout: 10_000 }).toBe(1);
    await expect.poll(text(page.locator('#build-rows')), { timeout: 10_000 }).toContain(buildId.slice(0, 8));
    await shot('builds');
  });

  it('cancels a running build from its page', async () => {
    await page.goto(`${kiln.url}/builds/new?repository=shop/web`);
    await page.getByLabel('Tags (comma-separated)').fill('slow');
    await page.getByLabel('Dockerfile').fill(`FROM ${kiln.registry}/base/busybox\nRUN echo started-sleeping; sleep 120\n`);
    await page.getByLabel('no cache').check();
    await page.getByRole('button', { name: 'Start build' }).click();
    await page.waitForURL(/\/builds\/[0-9a-f-]{36}$/);
    await expect.poll(text(page.locator('#log')), { timeout: 120_000 }).toContain('started-sleeping');
    await page.getByRole('button', { name: 'Cancel build' }).click();
    await expect.poll(text(page.locator('#build-status .status').first()), { timeout: 30_000 }).toBe('canceled');
    await expect.poll(text(page.locator('#build-status [role=alert]')), { timeout: 10_000 }).toContain('canceled');
    expect(await fetchManifest(kiln.registry, 'shop/web', 'slow')).toBeNull();
    await shot('build-canceled');
    // Rebuild runs the same Dockerfile again as a new build.
    const canceledUrl = page.url();
    await page.getByRole('button', { name: 'Rebuild' }).click();
    await expect.poll(() => page.url()).not.toBe(canceledUrl);
    await expect.poll(text(page.locator('#log')), { timeout: 120_000 }).toContain('started-sleeping');
    await page.getByRole('button', { name: 'Cancel build' }).click();
    await expect.poll(text(page.locator('#build-status .status').first()), { timeout: 30_000 }).toBe('canceled');
  });

  it('admin makes a namespace token (shown once); with it, another namespace stays out of sight', async () => {
    await kiln.api('/api/v1/namespaces', { json: { name: 'team-b' } });
    await page.goto(`${kiln.url}/admin/tokens?namespace=team-b`);
    await page.getByLabel('Token name').fill('ci');
    await page.getByRole('button', { name: 'Create token' }).click();
    const token = (await page.locator('#new-token').textContent())!.trim();
    expect(token).toMatch(/^kiln_/);
    await shot('tokens');

    const other = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await signIn(other, token);
    await expect.poll(text(other.locator('main')), { timeout: 10_000 }).toContain('team-b');
    expect(await text(other.locator('main'))()).not.toContain('shop');
    const res = await other.goto(`${kiln.url}/repositories/${repoId}`);
    expect(res!.status()).toBe(403);
    await expect.poll(text(other.getByRole('alert')), { timeout: 10_000 }).toContain('may not act on namespace "shop"');
    await other.goto(`${kiln.url}/builds?repository=shop/web`);
    await expect.poll(text(other.getByRole('alert')), { timeout: 10_000 }).toContain('may not act on namespace "shop"');
    await other.goto(`${kiln.url}/builds`);
    await expect.poll(() => other.locator('#build-rows tr').count(), { timeout: 10_000 }).toBe(0);
    await shot('phone-namespace-token', other);

    // On a phone the pages fit the width (tables scroll inside their own box).
    await other.getByRole('button', { name: 'Sign out' }).click();
    await other.waitForURL(/\/login$/);
    await signIn(other, kiln.token);
    const last = (await (await kiln.api('/api/v1/builds?repository=shop/web')).json()).items[0];
    for (const url of ['/namespaces/shop', `/repositories/${repoId}`, '/builds', `/builds/${last.id}`]) {
      await other.goto(`${kiln.url}${url}`);
      const width = await other.evaluate('document.documentElement.scrollWidth') as number;
      expect(width, url).toBeLessThanOrEqual(390);
    }
    await shot('phone-build', other);
    await other.close();
  });
});
