// The console in a real browser (issue 18): Debian's chromium driven by
// playwright-core against a real careloopd seeded with the demo network.
// The planner sends; the intake worker sees it arrive without reloading,
// sees the sender's signature verified in the browser, accepts and
// completes; the planner watches the loop close. Tampering between hub and
// browser shows red. axe-core finds no serious or critical violation.
// Screenshots of every step go to $CARELOOP_BROWSER_OUTPUT (default
// tests/browser/output).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';
import { startHub, totp } from './hub.mjs';

const OUT = process.env.CARELOOP_BROWSER_OUTPUT || new URL('./output', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM_BINARY || '/usr/bin/chromium';
const WAIT = { timeout: 20000 };
let hub, browser;

before(async () => {
  mkdirSync(OUT, { recursive: true });
  hub = await startHub();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
    args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [] });
});
after(async () => {
  if (process.env.DEBUG_CONSOLE) console.error(hub.logs());
  if (browser) await browser.close();
  if (hub) await hub.stop();
});

async function shoot(page, name) {
  await page.screenshot({ path: join(OUT, name + '.png'), fullPage: true });
}
async function newPage(width = 1280, height = 800) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  page.on('pageerror', (e) => { throw e; });
  return page;
}
// Types a login into the sign-in form (an admin's with the current code).
async function fillSignIn(page, { agency, user, password, totp_secret: secret }) {
  await page.goto(hub.url + '/');
  await page.getByLabel('Agency').fill(agency);
  await page.getByLabel('User', { exact: true }).fill(user);
  await page.getByLabel('Password').fill(password);
  if (secret) await page.getByLabel('Code from your authenticator app (admins)').fill(totp(secret));
  await page.getByRole('button', { name: 'Sign in' }).click();
}
async function signIn(page, agency, user) {
  await fillSignIn(page, hub.login(agency, user));
  await page.getByRole('button', { name: 'Sign out' }).waitFor(WAIT);
}
async function noSeriousViolations(page, where) {
  const r = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => v.id + ': ' + v.help), [], 'axe on ' + where);
}
async function sendReferral(page, withBehavioralHealth, mrn = hub.seeded.mrn, to = 'org.foodbank') {
  await page.getByRole('link', { name: 'New referral' }).click();
  await page.getByRole('heading', { name: 'New referral' }).waitFor(WAIT);
  await page.getByLabel('Medical record number (MRN)').fill(mrn);
  if (to === 'org.shelter') await page.getByLabel('Service needed').selectOption('housing-instability');
  await page.getByLabel('Send to').locator('option[value="' + to + '"]').waitFor({ state: 'attached', ...WAIT });
  await page.getByLabel('Send to').selectOption(to);
  const texts = page.getByLabel('Text');
  await texts.nth(0).fill('phone 555-0100, best after 5pm');
  await texts.nth(1).fill('hunger vital sign positive');
  if (withBehavioralHealth) {
    await page.getByRole('button', { name: 'Add a section' }).click();
    await texts.nth(2).fill('PHQ-9 of 14');
    // Before sending, the hub says what consent will withhold.
    await page.getByText('Section 3 (Behavioral health): will be withheld').waitFor(WAIT);
    await page.getByText('Section 1 (Contact details): will be shared').waitFor(WAIT);
    await shoot(page, '02b-planner-preview-before-sending-1280');
  }
  await page.getByRole('button', { name: 'Send referral' }).click();
  await page.locator('#verified-mark').waitFor(WAIT);
}

test('the planner sends, the food bank accepts and completes, the loop closes live', async () => {
  const planner = await newPage();
  await signIn(planner, 'org.stmarys');
  await noSeriousViolations(planner, 'sent list');
  await shoot(planner, '01-planner-sent-1280');

  const intake = await newPage();
  if (process.env.DEBUG_CONSOLE) {
    intake.on('response', async (r) => console.error('intake', r.status(), r.url(), r.url().includes('changes') ? await r.text() : ''));
    intake.on('console', (m) => console.error('intake console', m.text()));
  }
  await signIn(intake, 'org.foodbank');
  await intake.getByRole('heading', { name: 'Inbox' }).waitFor(WAIT);
  await intake.getByText('Nothing in the inbox.').waitFor(WAIT);
  await shoot(intake, '02-intake-empty-inbox-1280');

  await planner.getByRole('link', { name: 'New referral' }).click();
  await planner.getByLabel('Medical record number (MRN)').waitFor(WAIT);
  await noSeriousViolations(planner, 'new referral form');
  await planner.getByRole('link', { name: 'Sent referrals' }).click();
  await sendReferral(planner, true);
  // Consent covers contact and social needs, not behavioral health.
  await planner.getByText('1 section(s) were withheld').waitFor(WAIT);
  await planner.getByText(/Withheld: Behavioral health/).waitFor(WAIT);
  await planner.locator('.verified').waitFor(WAIT);
  await shoot(planner, '03-planner-sent-referral-1280');

  // The inbox updates without a reload.
  const row = intake.getByRole('link', { name: 'Food' });
  await row.waitFor(WAIT);
  await shoot(intake, '04-intake-inbox-arrived-1280');
  await row.click();
  await intake.locator('.verified').waitFor(WAIT);
  assert.match(await intake.locator('#verified-mark').innerText(), /Verified: signed by Dana Planner/);
  await intake.getByText('phone 555-0100, best after 5pm').waitFor(WAIT);
  await intake.getByText('hunger vital sign positive').waitFor(WAIT);
  assert.equal(await intake.getByText('PHQ-9 of 14').count(), 0, 'the withheld section stays out');
  await intake.getByText(/Withheld: Behavioral health/).waitFor(WAIT);
  await noSeriousViolations(intake, 'referral page');
  await shoot(intake, '05-intake-referral-verified-1280');

  await intake.getByRole('button', { name: 'Accept' }).click();
  await intake.locator('#status', { hasText: 'Accepted' }).waitFor(WAIT);
  await planner.locator('#status', { hasText: 'Accepted' }).waitFor(WAIT);   // live
  await shoot(planner, '06-planner-sees-accepted-1280');

  // They talk in the referral's thread; the planner sees it live.
  await intake.getByText('Write a message').click();
  await intake.getByLabel('Message').fill('We will call after 5pm');
  await intake.getByRole('button', { name: 'Send message' }).click();
  await intake.getByText('We will call after 5pm').waitFor(WAIT);
  await planner.getByText('We will call after 5pm').waitFor(WAIT);
  await planner.getByText('Sam Intake (org.foodbank)').waitFor(WAIT);
  // Each message is checked in the browser too, with its author's key.
  await planner.locator('.msg-verified', { hasText: 'signed by Sam Intake at org.foodbank' }).waitFor(WAIT);

  await intake.getByText('Complete with outcome').click();
  await intake.getByLabel('What was provided').fill('weekly food box');
  await intake.getByRole('button', { name: 'Complete', exact: true }).click();
  await intake.locator('#status', { hasText: 'Completed' }).waitFor(WAIT);
  await planner.locator('#status', { hasText: 'Completed' }).waitFor(WAIT);  // live
  await planner.getByText('Outcome: weekly food box').waitFor(WAIT);
  await shoot(intake, '07-intake-completed-1280');
  await shoot(planner, '08-planner-loop-closed-1280');

  await planner.getByRole('link', { name: 'Sent referrals' }).click();
  await planner.getByText('Completed', { exact: true }).first().waitFor(WAIT);

  // The food bank reports its open places from the inbox.
  await intake.getByRole('link', { name: 'Inbox' }).click();
  await intake.getByLabel(/Food: open places now/).fill('5');
  await intake.getByRole('button', { name: 'Report' }).click();
  await intake.getByLabel('Food: open places now (5)').waitFor(WAIT);
  await noSeriousViolations(intake, 'inbox with open places');
  await planner.context().close();
  await intake.context().close();
});

test('a section or signature altered between hub and browser is shown red', async () => {
  const planner = await newPage();
  await signIn(planner, 'org.stmarys');
  // The consented patient, to the shelter: the shelter sees two sections.
  await sendReferral(planner, false, hub.seeded.mrn, 'org.shelter');
  await planner.locator('.verified').waitFor(WAIT);
  const referralUrl = planner.url();
  await planner.context().close();

  const intake = await newPage();
  await signIn(intake, 'org.shelter');
  const cases = {
    section: (r) => { r.referral.sections[0].content = Buffer.from('phone 555-0199').toString('base64'); },
    signature: (r) => {
      const env = Buffer.from(r.referral.manifest_envelope, 'base64');
      env[env.length - 1] ^= 0x01;  // the signature is the last field
      r.referral.manifest_envelope = env.toString('base64');
    },
    key: (r) => { r.sender_keys[0].public_key = Buffer.alloc(32, 7).toString('base64'); },
  };
  for (const [what, tamper] of Object.entries(cases)) {
    await intake.route('**/api/referrals/org.stmarys/*', async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      tamper(body);
      await route.fulfill({ response, json: body });
    });
    await intake.goto(referralUrl.replace(/^[^#]*/, hub.url + '/'));
    await intake.locator('.unverified').waitFor(WAIT);
    assert.match(await intake.locator('#verified-mark').innerText(), /Not verified/, what);
    assert.equal(await intake.locator('.verified').count(), 0, what);
    await shoot(intake, '09-tampered-' + what + '-1280');
    await intake.unrouteAll();
  }
  // Untouched, the same page is green again (the check is what failed).
  await intake.goto(referralUrl.replace(/^[^#]*/, hub.url + '/'));
  await intake.reload();
  await intake.locator('.verified').waitFor(WAIT);
  await intake.context().close();
});

test('the planner records a consent from a signed form, the preview follows it, and revokes it', async () => {
  const planner = await newPage();
  await signIn(planner, 'org.stmarys');
  await planner.getByRole('link', { name: 'Consents' }).click();
  await planner.getByLabel('Medical record number (MRN)').fill('000401');
  await planner.getByRole('button', { name: 'Look up consents' }).click();
  await planner.getByText('No consent of this person is on record for you.').waitFor(WAIT);
  await planner.getByLabel('Social needs').check();
  // Only to the food bank, as the person asked.
  await planner.getByLabel('Only these agencies').check();
  await planner.getByLabel('Valley Food Bank').check();
  await planner.getByLabel('Signed consent form').setInputFiles({ name: 'consent.pdf',
    mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4 the signed consent form') });
  await planner.getByRole('button', { name: 'Record consent' }).click();
  await planner.locator('#consents .status', { hasText: 'Active' }).waitFor(WAIT);
  assert.match(await planner.locator('#consents tbody tr').first().textContent(), /org\.foodbank/);
  assert.doesNotMatch(await planner.locator('#consents tbody tr').first().textContent(), /network/i);
  await noSeriousViolations(planner, 'consents');
  await shoot(planner, '12-consent-recorded-1280');

  // Before sending, the preview follows the new consent.
  await planner.getByRole('link', { name: 'New referral' }).click();
  // The consents page has an MRN field too: fill the form's once it is drawn.
  await planner.getByRole('heading', { name: 'New referral' }).waitFor(WAIT);
  await planner.getByLabel('Medical record number (MRN)').fill('000401');
  await planner.getByLabel('Medical record number (MRN)').press('Tab');
  await planner.getByText('Section 2 (Social needs): will be shared').waitFor(WAIT);
  await planner.getByText('Section 1 (Contact details): will be withheld').waitFor(WAIT);

  await planner.getByRole('link', { name: 'Consents' }).click();
  await planner.getByRole('heading', { name: 'Consents', exact: true }).waitFor(WAIT);
  await planner.getByLabel('Medical record number (MRN)').fill('000401');
  await planner.getByRole('button', { name: 'Look up consents' }).click();
  await planner.getByText('Revoke', { exact: true }).click();
  await planner.getByLabel('Why (no personal details)').fill('withdrawn by phone');
  await planner.getByRole('button', { name: 'Revoke consent' }).click();
  await planner.locator('#consents .status', { hasText: 'Revoked' }).waitFor(WAIT);
  await planner.context().close();
});

test('a message altered between hub and browser is shown red', async () => {
  const planner = await newPage();
  await signIn(planner, 'org.stmarys');
  const link = planner.getByRole('link', { name: 'Food' }).first();
  await link.waitFor(WAIT);
  await planner.route('**/api/referrals/org.stmarys/*', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    for (const t of body.referral.thread || []) {
      for (const sec of t.sections || []) sec.content = Buffer.from('We will call after 9pm').toString('base64');
    }
    await route.fulfill({ response, json: body });
  });
  await link.click();
  await planner.locator('.msg-unverified', { hasText: 'Not verified' }).first().waitFor(WAIT);
  assert.equal(await planner.locator('.msg-verified').count(), 0);
  await planner.context().close();
});

test('at 375 px the inbox and a referral are usable', async () => {
  const intake = await newPage(375, 800);
  await signIn(intake, 'org.foodbank');
  await noSeriousViolations(intake, 'login at 375 px');
  const link = intake.getByRole('link', { name: 'Food' }).first();
  await link.waitFor(WAIT);
  await shoot(intake, '10-inbox-375');
  await link.click();
  await intake.locator('.verified').waitFor(WAIT);
  const width = await intake.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, 'no sideways scrolling at 375 px (scroll width ' + width + ')');
  await shoot(intake, '11-referral-375');
  await intake.context().close();
});

test('signing in and opening a referral work with the keyboard alone', async () => {
  const page = await newPage();
  const l = hub.login('org.foodbank');
  await page.goto(hub.url + '/');
  await noSeriousViolations(page, 'sign-in page');
  await page.getByLabel('Agency').waitFor(WAIT);
  await page.keyboard.press('Tab');  // skip link
  for (const value of [l.agency, l.user, l.password]) {
    await page.keyboard.press('Tab');
    await page.keyboard.type(value);
  }
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Inbox' }).waitFor(WAIT);
  const first = page.getByRole('link', { name: 'Food' }).first();
  await first.waitFor(WAIT);
  for (let i = 0; i < 30 && !(await first.evaluate((e) => e === document.activeElement)); i++) {
    await page.keyboard.press('Tab');
  }
  assert.ok(await first.evaluate((e) => e === document.activeElement), 'Tab reaches the first referral');
  await page.keyboard.press('Enter');
  await page.locator('.verified').waitFor(WAIT);
  await page.context().close();
});

test('more open consoles than worker threads: sign-in and actions still answer', async () => {
  const consoles = [];
  for (let i = 0; i < 12; i++) {  // the edge has 8 worker threads
    const p = await newPage();
    await signIn(p, 'org.foodbank');
    consoles.push(p);
  }
  const planner = await newPage();
  const started = Date.now();
  await signIn(planner, 'org.stmarys');
  await sendReferral(planner, false, '000302');
  await planner.locator('.verified').waitFor(WAIT);
  assert.ok(Date.now() - started < 15000, 'answered while 12 consoles were open');
  for (const p of consoles) await p.context().close();
  await planner.context().close();
});

test("the food bank's admin adds a worker, who sets a password at first sign-in; disabling them ends their session", async () => {
  const admin = await newPage();
  await signIn(admin, 'org.foodbank', 'u-admin');
  await admin.getByRole('heading', { name: 'Staff', exact: true }).waitFor(WAIT);
  await noSeriousViolations(admin, 'staff');
  const add = admin.locator('form[data-form=staff-add]');
  await add.getByLabel('User id (letters, digits, dots, dashes)').fill('u-newhire');
  await add.getByLabel('Name').fill('Robin Newhire');
  await add.getByLabel('Takes referrals').check();
  await add.getByRole('button', { name: 'Add' }).click();
  await admin.getByRole('heading', { name: 'Hand these to Robin Newhire in person' }).waitFor(WAIT);
  const oneTime = await admin.locator('code[data-secret=password]').textContent();
  const row = admin.locator('tr[data-user=u-newhire]');
  await row.getByText('Listed', { exact: true }).waitFor(WAIT);
  await shoot(admin, '08-admin-added-a-worker-1280');

  // The new worker: the one-time password leads to choosing a password.
  const worker = await newPage(375, 800);
  await fillSignIn(worker, { agency: 'org.foodbank', user: 'u-newhire', password: oneTime });
  await worker.getByRole('heading', { name: 'Choose a password' }).waitFor(WAIT);
  await noSeriousViolations(worker, 'choose a password');
  await worker.getByLabel('One-time password').fill(oneTime);
  await worker.getByLabel('New password (at least 12 characters)').fill('robin-new-password');
  await worker.getByLabel('New password again').fill('robin-new-password');
  await shoot(worker, '09-worker-chooses-a-password-375');
  await worker.getByRole('button', { name: 'Set password' }).click();
  await worker.getByRole('heading', { name: 'Inbox' }).waitFor(WAIT);

  // Disabled by the admin: the worker's next request finds the session ended.
  await row.getByRole('button', { name: 'Disable' }).click();
  await admin.locator('tr[data-user=u-newhire]').getByText('Deactivated').waitFor(WAIT);
  await shoot(admin, '10-admin-disabled-the-worker-1280');
  await worker.reload();
  await worker.getByRole('button', { name: 'Sign in' }).waitFor(WAIT);
  await admin.context().close();
  await worker.context().close();
});

test('the planner lets the hub choose: the ranked agencies with why, before and after sending', async () => {
  const planner = await newPage();
  await signIn(planner, 'org.stmarys');
  await planner.getByRole('link', { name: 'New referral' }).click();
  await planner.getByRole('heading', { name: 'New referral' }).waitFor(WAIT);
  await planner.getByLabel('Medical record number (MRN)').fill('000402');
  await planner.getByLabel('The best match near the person').check();
  await planner.getByLabel("The person's postal code").fill('97201');
  await planner.getByLabel('Preferred language').selectOption('en');
  const first = planner.locator('#ranking ol li').first();
  await first.waitFor(WAIT);
  assert.match(await first.textContent(), /^Valley Food Bank: offers food-insecurity; .*open slots/);
  await planner.getByLabel('Text').nth(0).fill('phone 555-0100');
  await noSeriousViolations(planner, 'new referral by criteria');
  await shoot(planner, '11-planner-ranked-agencies-1280');
  await planner.getByRole('button', { name: 'Send referral' }).click();
  await planner.locator('#routed').waitFor(WAIT);
  assert.match(await planner.locator('#routed').textContent(), /The hub chose org\.foodbank/);
  await planner.context().close();
});

test('emergency staff open emergency access with a reason, for a bounded time', async () => {
  const page = await newPage();
  await signIn(page, 'org.stmarys', 'u-ed');
  await page.getByRole('heading', { name: 'Emergency access' }).waitFor(WAIT);
  await noSeriousViolations(page, 'emergency access');
  await page.getByLabel('Medical record number (MRN)').fill(hub.seeded.mrn);
  await page.getByLabel('Behavioral health').check();
  await page.getByLabel('Why (a short reason, no personal details)').fill('unresponsive in the emergency department');
  await page.getByRole('button', { name: 'Open emergency access' }).click();
  await page.locator('#emergency-open').waitFor(WAIT);
  assert.match(await page.locator('#emergency-open').textContent(), /a compliance officer will review it/);
  await shoot(page, '13-emergency-access-1280');
  await page.context().close();
});

// The privacy officer's desk (issue 19): a person found by a hospital's
// record number; the accounting of disclosures holds exactly what the
// intake worker was shown; "who opened" names the intake worker who opened
// the behavioural-health section; an emergency access is reviewed; a bundle
// exported from the desk verifies green, and with one line altered red,
// naming that line.
test('the privacy officer reads the accounting, sees who opened what, reviews emergency access and checks bundles', async () => {
  const mrn = '000419';
  const planner = await newPage();
  await signIn(planner, 'org.stmarys', 'u-planner');
  const call = (page, method, path, body) => page.evaluate(async ([m, p, b]) => {
    const s = await (await fetch('/api/session')).json();
    const res = await fetch(p, { method: m, headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf }, body: JSON.stringify(b) });
    const out = await res.json();
    if (!res.ok) throw new Error(out.error);
    return out;
  }, [method, path, body]);
  // The person consents to their behavioural-health record going to the food bank only.
  await call(planner, 'POST', '/api/consents', { mrn, categories: ['behavioral-health'], recipients: ['org.foodbank'],
    purposes: ['care-coordination'], evidence_sha256: 'ab'.repeat(32) });
  const sent = await call(planner, 'POST', '/api/referrals', { mrn, service: 'food-insecurity', recipient: 'org.foodbank',
    reason: 'discharge', sections: [{ id: 'contact', category: 'contact', text: 'phone 555-0142' },
      { id: 'bh', category: 'behavioral-health', text: 'PHQ-9 of 14' }] });
  await planner.context().close();

  // The intake worker opens it: the behavioural-health section only.
  const intake = await newPage();
  await signIn(intake, 'org.foodbank', 'u-intake');
  await intake.goto(hub.url + '/#/referral/' + sent.referral);
  await intake.locator('.verified').waitFor(WAIT);
  await intake.getByText('PHQ-9 of 14').waitFor(WAIT);
  assert.equal(await intake.getByText('phone 555-0142').count(), 0, 'contact was withheld');
  await intake.context().close();

  // Emergency access at the hospital, for the officer to review.
  const ed = await newPage();
  await signIn(ed, 'org.stmarys', 'u-ed');
  await call(ed, 'POST', '/api/emergency', { mrn, categories: ['clinical'], reason: 'unresponsive on arrival', minutes: 30 });
  await ed.context().close();

  const officer = await newPage();
  await signIn(officer, 'org.privacy', 'u-officer');
  await officer.getByRole('heading', { name: "A person's records" }).waitFor(WAIT);
  const find = officer.locator('form[data-form=person]');
  await find.getByLabel('Agency (its id, e.g. org.stmarys)').fill('org.stmarys');
  await find.getByLabel('Record number at that agency (MRN)').fill(mrn);
  await find.getByRole('button', { name: 'Find' }).click();
  await officer.locator('#disclosures tbody tr').first().waitFor(WAIT);
  // Exactly what the intake worker saw: behavioural health, to the food bank.
  const disclosed = await officer.locator('#disclosures tbody tr').allTextContents();
  assert.equal(disclosed.length, 1, disclosed.join('\n'));
  assert.match(disclosed[0], /Valley Food Bank/);
  assert.match(disclosed[0], /behavioral-health/);
  assert.doesNotMatch(disclosed[0], /contact/);
  // The §164.528 accounting leaves out disclosures for treatment (care coordination is).
  await officer.getByLabel(/Only what HIPAA/).check();
  await officer.getByText('No disclosures in this period.').waitFor(WAIT);
  await officer.getByLabel(/Only what HIPAA/).uncheck();
  await officer.locator('#disclosures tbody tr').first().waitFor(WAIT);
  // Who opened the behavioural-health section: the intake worker, under the consent.
  await officer.getByLabel('Section', { exact: true }).selectOption('behavioral-health');
  const opened = await officer.locator('#access tbody tr').allTextContents();
  assert.ok(opened.some((r) => /org\.foodbank/.test(r) && /u-intake/.test(r) && /consent/.test(r)), opened.join('\n'));
  assert.ok(opened.every((r) => !/org\.shelter/.test(r)));
  await noSeriousViolations(officer, 'privacy desk: a person');
  await shoot(officer, '30-officer-person-1280');
  // The bundle of this person, as evidence.
  const [download] = await Promise.all([officer.waitForEvent('download'),
    officer.getByRole('button', { name: 'Export a bundle' }).click()]);
  const bundle = readFileSync(await download.path(), 'utf8');
  assert.ok(bundle.split('\n').length > 3);
  // "Who opened this" for the referral itself.
  await officer.getByLabel('Referral (sender/id, e.g. org.stmarys/r-1001)').fill(sent.referral);
  await officer.getByRole('button', { name: 'Who opened it' }).click();
  await officer.locator('#r-access tbody tr', { hasText: 'u-intake' }).waitFor(WAIT);
  await noSeriousViolations(officer, 'privacy desk: a referral');

  // The emergency access, reviewed.
  await officer.getByRole('link', { name: 'Emergency reviews' }).click();
  await officer.getByRole('heading', { name: 'Emergency access reviews' }).waitFor(WAIT);
  const card = officer.locator('article[data-break-glass]', { hasText: 'unresponsive on arrival' });
  await card.getByLabel('Review notes').fill('patient arrived unresponsive; access was needed');
  await card.getByRole('button', { name: 'Appropriate', exact: true }).click();
  // A reviewed one leaves the queue.
  await officer.locator('article[data-break-glass]', { hasText: 'unresponsive on arrival' }).waitFor({ state: 'detached', ...WAIT });
  await officer.getByRole('button', { name: 'Include reviewed' }).click();
  await officer.locator('article[data-break-glass]', { hasText: 'unresponsive on arrival' })
    .getByText('Appropriate — reviewed by org.privacy / u-officer').waitFor(WAIT);
  await noSeriousViolations(officer, 'emergency reviews');
  await shoot(officer, '31-officer-break-glass-1280');

  // Integrity: the monitor is green; the bundle verifies; one altered line is named.
  await officer.getByRole('link', { name: 'Integrity' }).click();
  await officer.locator('#monitor.verified').waitFor(WAIT);
  const check = async (text) => {
    await officer.getByLabel('Bundle (JSON Lines)').setInputFiles({ name: 'bundle.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(text) });
    await officer.getByRole('button', { name: 'Check' }).click();
    await officer.locator('#bundle-result').waitFor(WAIT);
    return officer.locator('#bundle-result');
  };
  const good = await check(bundle);
  assert.equal(await good.getAttribute('class'), 'verified', await good.textContent());
  const lines = bundle.split('\n');
  const victim = lines.findIndex((l) => { try { return !!JSON.parse(l).event.payload; } catch (e) { return false; } });
  assert.ok(victim > 0);
  const line = JSON.parse(lines[victim]);
  const ev = line.event;
  const bytes = Buffer.from(ev.payload, 'base64');
  bytes[bytes.length - 1] ^= 1;
  ev.payload = bytes.toString('base64');
  lines[victim] = JSON.stringify(line);
  const bad = await check(lines.join('\n'));
  assert.equal(await bad.getAttribute('class'), 'unverified');
  assert.match(await bad.textContent(), new RegExp('^Line ' + (victim + 1) + ':'));
  await noSeriousViolations(officer, 'integrity');
  await shoot(officer, '32-officer-integrity-1280');
  await officer.context().close();
});

test('every agency sees its figures; small cells show as <11', async () => {
  const page = await newPage();
  await signIn(page, 'org.foodbank', 'u-intake');
  await page.getByRole('link', { name: 'Figures' }).click();
  await page.getByRole('heading', { name: 'Referral figures' }).waitFor(WAIT);
  const total = page.locator('#figures tr[data-group=total]');
  await total.waitFor(WAIT);
  // Never a count from 1 to 10.
  const offered = await total.locator('td').nth(1).textContent();
  assert.ok(offered === '<11' || offered === '0' || Number(offered) >= 11, offered);
  assert.equal(await page.locator('#figures tr[data-group=org\\.shelter]').count(), 0, 'not the shelter\'s');
  await page.getByLabel('By', { exact: true }).selectOption('service');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.locator('#figures tr[data-group=food-insecurity]').waitFor(WAIT);
  await noSeriousViolations(page, 'figures');
  await shoot(page, '33-figures-1280');
  await page.context().close();
});
