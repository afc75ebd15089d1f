// The console's HTTP API against a real careloopd (issue 18): sessions,
// CSRF, roles, another agency's referral answered like a missing one,
// lockout, cookie flags, security headers, no PHI in the hub's log lines.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startHub, totp } from './hub.mjs';

let hub;
before(async () => {
  process.env.CARELOOP_LOG_LEVEL = 'info';  // every access line, for the PHI check
  hub = await startHub();
});
after(async () => { if (hub) await hub.stop(); });

// A signed-in client of one staff member: its cookie and CSRF token.
async function signIn(agency, password) {
  const l = hub.login(agency);
  return signInAs({ agency: l.agency, user: l.user, password: password ?? l.password });
}
async function signInAs({ agency, user, password, code = '' }) {
  const res = await fetch(hub.url + '/api/login', { method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ agency, user, password, code }) });
  const body = await res.json();
  if (res.status !== 200) return { status: res.status, body };
  const cookie = res.headers.get('set-cookie');
  return { status: 200, cookie, csrf: body.csrf, cookieValue: cookie.split(';')[0],
    async call(method, path, json, { csrf = true } = {}) {
      if (path === '/api/password' && method === 'POST') {
        // A new password opens a new session (the old one ends).
        const r = await this.raw(method, path, json, csrf);
        if (r.status === 200) { this.cookieValue = r.headers.get('set-cookie').split(';')[0]; this.csrf = r.body.csrf; }
        return r;
      }
      return this.raw(method, path, json, csrf);
    },
    async raw(method, path, json, csrf) {
      const headers = { Cookie: this.cookieValue };
      if (json !== undefined) headers['Content-Type'] = 'application/json';
      if (csrf && method !== 'GET') headers['X-CSRF-Token'] = this.csrf;
      const r = await fetch(hub.url + path, { method, headers,
        body: json === undefined ? undefined : JSON.stringify(json) });
      return { status: r.status, body: await r.json().catch(() => ({})), headers: r.headers };
    } };
}

// Each test its own person: an open referral for the same person and
// service is a duplicate the hub refuses.
const REFERRAL = (recipient, mrn = '000123') => ({ mrn, service: recipient === 'org.shelter' ? 'housing-instability' : 'food-insecurity',
  reason: 'discharge follow-up', priority: 'urgent', recipient,
  sections: [{ id: 'contact', category: 'contact', text: 'phone 555-0100' },
    { id: 'needs', category: 'social-needs', text: 'SECRET-NEEDS-TEXT' }] });

test('no session: 401 on every API route', async () => {
  for (const path of ['/api/session', '/api/inbox', '/api/sent', '/api/changes',
    '/api/recipients?service=food-insecurity', '/api/referrals/org.stmarys/r-1']) {
    const r = await fetch(hub.url + path);
    assert.equal(r.status, 401, path);
  }
  const r = await fetch(hub.url + '/api/referrals', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(REFERRAL('org.foodbank')) });
  assert.equal(r.status, 401);
});

test('a change without its CSRF token is refused and changes nothing', async () => {
  const planner = await signIn('org.stmarys');
  const before = (await planner.call('GET', '/api/sent')).body.referrals || [];
  const r = await planner.call('POST', '/api/referrals', REFERRAL('org.foodbank'), { csrf: false });
  assert.equal(r.status, 403);
  const after = (await planner.call('GET', '/api/sent')).body.referrals || [];
  assert.equal(after.length, before.length);
});

test("another agency's referral answers exactly like a missing one", async () => {
  const planner = await signIn('org.stmarys');
  const sent = await planner.call('POST', '/api/referrals', REFERRAL('org.foodbank'));
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  const id = sent.body.referral;
  const foodbank = await signIn('org.foodbank');
  assert.equal((await foodbank.call('GET', '/api/referrals/' + id)).status, 200);
  const shelter = await signIn('org.shelter');
  const foreign = await shelter.call('GET', '/api/referrals/' + id);
  const missing = await shelter.call('GET', '/api/referrals/org.stmarys/r-000000000000');
  assert.equal(foreign.status, 404);
  assert.deepEqual(foreign.body, missing.body);
  assert.equal(JSON.stringify(foreign.body).includes('SECRET'), false);
  // Nor may the shelter move it.
  const move = await shelter.call('POST', '/api/referrals/' + id + '/status', { status: 'accepted' });
  assert.ok(move.status === 403 || move.status === 404 || move.status === 409, String(move.status));
  assert.equal((await foodbank.call('GET', '/api/referrals/' + id)).body.referral.status, 'TASK_REQUESTED');
});

test('the edge adds no power: staff without the role are refused before anything is signed', async () => {
  const intake = await signIn('org.foodbank');
  const r = await intake.call('POST', '/api/referrals', REFERRAL('org.shelter'));
  assert.equal(r.status, 403);
  assert.match(r.body.error, /sender role/);
  const planner = await signIn('org.stmarys');
  const sent = await planner.call('POST', '/api/referrals', REFERRAL('org.foodbank', '000201'));
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  // The sender cannot accept its own referral: the hub's lifecycle refuses.
  const accept = await planner.call('POST', '/api/referrals/' + sent.body.referral + '/status', { status: 'accepted' });
  assert.notEqual(accept.status, 200);
});

test('the sender previews what consent withholds; nobody else may ask', async () => {
  const planner = await signIn('org.stmarys');
  const ask = (who, mrn) => who.call('POST', '/api/preview', { mrn, recipient: 'org.foodbank',
    categories: ['contact', 'social-needs', 'behavioral-health'] });
  const r = await ask(planner, '000123');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const permit = Object.fromEntries(r.body.decisions.map((d) => [d.category, !!d.permit]));
  assert.deepEqual(permit, { contact: true, 'social-needs': true, 'behavioral-health': false });
  assert.equal(JSON.stringify(r.body).includes('consent_ids'), false);
  // A person the hub does not know yet: nothing would be shared.
  const unknown = await ask(planner, '999999');
  assert.equal(unknown.status, 200);
  assert.ok(unknown.body.decisions.every((d) => !d.permit));
  // The food bank names people by its own record numbers only: the same
  // number is another person (unknown here), and St Mary's patient's consent
  // says nothing through it. (A foreign authority over gRPC is refused alike
  // for known and unknown people: tests/integration/access_matrix_test.cc.)
  const foodbank = await signIn('org.foodbank');
  const other = await ask(foodbank, '000123');
  assert.equal(other.status, 200);
  assert.ok(other.body.decisions.every((d) => !d.permit));
  assert.deepEqual(other.body, (await ask(foodbank, '999998')).body);
  // The MRN never travels in a URL: the route is POST, with CSRF.
  assert.equal((await planner.call('POST', '/api/preview', { mrn: '000123', recipient: 'org.foodbank', categories: [] }, { csrf: false })).status, 403);
});

test('open places: reported by a receiver, not by a sender, and checked', async () => {
  const foodbank = await signIn('org.foodbank');
  assert.equal((await foodbank.call('POST', '/api/capacity', { service: 'food-insecurity', open_slots: 3 })).status, 200);
  const own = await foodbank.call('GET', '/api/agency');
  assert.deepEqual(own.body.capacity.map((c) => [c.service, c.open_now]), [['food-insecurity', 3]]);
  for (const bad of [-1, 1.5, 'three', 1e9]) {
    assert.equal((await foodbank.call('POST', '/api/capacity', { service: 'food-insecurity', open_slots: bad })).status, 400, String(bad));
  }
  const planner = await signIn('org.stmarys');
  const r = await planner.call('POST', '/api/capacity', { service: 'food-insecurity', open_slots: 3 });
  assert.equal(r.status, 403);
});

test('by criteria: the ranked agencies before sending, with why, and the hub routes to the first', async () => {
  const planner = await signIn('org.stmarys');
  const foodbank = await signIn('org.foodbank');
  const rank = () => planner.call('POST', '/api/candidates', { service: 'food-insecurity', postal_code: '97201', language: 'en' });
  assert.equal((await foodbank.call('POST', '/api/capacity', { service: 'food-insecurity', open_slots: 0 })).status, 200);
  let r = await rank();
  assert.equal(r.status, 200, JSON.stringify(r.body));
  let bank = r.body.candidates.find((c) => c.agency_id === 'org.foodbank');
  assert.equal(!!bank.eligible, false, 'no open places: it cannot take it now');
  assert.equal(bank.name, 'Valley Food Bank');
  assert.equal(r.body.candidates.some((c) => c.agency_id === 'org.shelter'), false, 'only agencies offering the service');
  assert.equal((await foodbank.call('POST', '/api/capacity', { service: 'food-insecurity', open_slots: 2 })).status, 200);
  r = await rank();
  bank = r.body.candidates[0];
  assert.equal(bank.agency_id, 'org.foodbank');
  assert.equal(bank.eligible, true);
  assert.ok(bank.reasons.some((w) => /open slots/.test(w)), JSON.stringify(bank.reasons));
  // Sent by criteria: the hub routes it to the first, and says why.
  const sent = await planner.call('POST', '/api/referrals', { ...REFERRAL('', '000301'), recipient: '', postal_code: '97201', language: 'en' });
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  assert.equal(sent.body.recipient_agency, 'org.foodbank');
  assert.equal(sent.body.candidates[0].agency_id, 'org.foodbank');
  // Only a sender ranks, and the postal code is needed.
  assert.equal((await foodbank.call('POST', '/api/candidates', { service: 'food-insecurity', postal_code: '97201' })).status, 403);
  assert.equal((await planner.call('POST', '/api/candidates', { service: 'food-insecurity' })).status, 400);
  assert.equal((await planner.call('POST', '/api/candidates', { service: 'food-insecurity', postal_code: 97201 })).status, 400);
});

test('an imported (listed) agency is offered to no sender until onboarded', async () => {
  // The hub admin imports an Open Referral organization that offers food and has places.
  const dir = join(hub.dir, 'hsds-listed');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'pantry.json'), JSON.stringify({ id: 'aa11bb22-0000-4000-8000-000000000001', name: 'Corner Pantry',
    services: [{ id: 'aa11bb22-0000-4000-8000-000000000002', status: 'active',
      attributes: [{ taxonomy_term: { code: 'food-insecurity' } }],
      capacities: [{ id: 'cap-1', unit: { id: 'u-1', name: 'Place', identifier: 'place' }, available: 50, maximum: 50 }] }] }));
  const imported = spawnSync(process.env.CARELOOP_CLI_BINARY, ['--hub', hub.hubAddress, '--dev-admin', 'hub-admin',
    'directory', 'import', '--hsds', dir, '--sign-key', join(hub.dir, 'keys', 'hub-admin.pem')], { encoding: 'utf8' });
  assert.equal(imported.status, 0, imported.stderr + imported.stdout);
  const listed = 'hsds.aa11bb22-0000-4000-8000-000000000001';
  const planner = await signIn('org.stmarys');
  const offered = await planner.call('GET', '/api/recipients?service=food-insecurity');
  assert.equal(offered.status, 200);
  const ids = offered.body.agencies.map((a) => a.agency_id);
  assert.ok(ids.includes('org.foodbank'), ids.join());
  assert.ok(!ids.includes(listed), 'a listed agency is not offered: ' + ids.join());
  const ranked = await planner.call('POST', '/api/candidates', { service: 'food-insecurity', postal_code: '97201' });
  const pantry = ranked.body.candidates.find((c) => c.agency_id === listed);
  assert.equal(!!pantry.eligible, false);
  assert.ok(pantry.reasons.some((w) => /not onboarded/.test(w)), JSON.stringify(pantry.reasons));
  // Named anyway: the hub refuses it, and says why.
  const named = await planner.call('POST', '/api/referrals', REFERRAL(listed, '000302'));
  assert.notEqual(named.status, 200);
  assert.match(JSON.stringify(named.body), /not onboarded/);
});

test("consents: recorded with the form's hash, revoked only by the recording agency", async () => {
  const planner = await signIn('org.stmarys');
  const hash = 'ab'.repeat(32);
  const bad = [{ evidence_sha256: 'xyz' }, { evidence_sha256: hash.toUpperCase() }, { categories: [] },
    { network: false }, { until: '31/12/2030' }, { categories: ['no-such-category'] }];
  for (const b of bad) {
    const r = await planner.call('POST', '/api/consents', { mrn: '000501', categories: ['contact'],
      network: true, purposes: ['care-coordination'], evidence_sha256: hash, ...b });
    assert.ok(r.status >= 400 && r.status < 500, JSON.stringify(b) + ' -> ' + r.status);
  }
  assert.deepEqual((await planner.call('POST', '/api/consents/find', { mrn: '000501' })).body.consents, undefined);
  const made = await planner.call('POST', '/api/consents', { mrn: '000501', categories: ['contact'],
    network: true, purposes: ['care-coordination'], evidence_sha256: hash, until: '2099-12-31' });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const foodbank = await signIn('org.foodbank');
  const foreign = await foodbank.call('POST', '/api/consents/revoke', { consent_id: made.body.consent_id, reason: 'x' });
  assert.notEqual(foreign.status, 200);
  const list = await planner.call('POST', '/api/consents/find', { mrn: '000501' });
  assert.equal(list.body.consents.length, 1);
  assert.equal(list.body.consents[0].consent.status, 'CONSENT_ACTIVE');
  assert.equal((await planner.call('POST', '/api/consents/revoke', { consent_id: made.body.consent_id, reason: 'withdrawn' })).status, 200);
});

test('bad input: a clear error and nothing written', async () => {
  const planner = await signIn('org.stmarys');
  const count = async () => ((await planner.call('GET', '/api/sent')).body.referrals || []).length;
  const n = await count();
  const cases = [
    { ...REFERRAL('org.foodbank'), mrn: '' },
    { ...REFERRAL('org.foodbank'), sections: [] },
    { ...REFERRAL('org.foodbank'), sections: 'x' },
    { ...REFERRAL('org.foodbank'), priority: 'whenever' },
    { ...REFERRAL('org.foodbank'), mrn: 7 },
    { ...REFERRAL('org.foodbank'), sections: [{ id: 'a', category: 'no-such-category', text: 'x' }] },
    { ...REFERRAL('org.foodbank'), recipient: 'org.nobody' },
  ];
  for (const body of cases) {
    const r = await planner.call('POST', '/api/referrals', body);
    assert.ok(r.status >= 400 && r.status < 500, JSON.stringify(body) + ' -> ' + r.status);
    assert.equal(typeof r.body.error, 'string');
  }
  const notJson = await fetch(hub.url + '/api/referrals', { method: 'POST',
    headers: { Cookie: planner.cookieValue, 'X-CSRF-Token': planner.csrf, 'Content-Type': 'application/json' },
    body: '{not json' });
  assert.equal(notJson.status, 400);
  assert.equal(await count(), n);
});

test('cookies are HttpOnly and SameSite=Strict; every answer carries the security headers', async () => {
  const planner = await signIn('org.stmarys');
  assert.match(planner.cookie, /HttpOnly/);
  assert.match(planner.cookie, /SameSite=Strict/);
  for (const path of ['/', '/app.js', '/api/session', '/no-such-page']) {
    const r = await fetch(hub.url + path, { headers: { Cookie: planner.cookieValue } });
    assert.match(r.headers.get('content-security-policy') || '', /script-src 'self'/, path);
    assert.equal(r.headers.get('x-frame-options'), 'DENY', path);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', path);
  }
  const html = await (await fetch(hub.url + '/')).text();
  assert.equal(/<script>/.test(html), false, 'no inline script');
});

// Before the lockout test, which locks the privacy office's login.
test("the compliance desk: officers only, a lookup never creates a person, bad input refused; an agency's figures are its own", async () => {
  const planner = await signIn('org.stmarys');
  const intake = await signIn('org.foodbank');
  const officer = await signInAs(hub.login('org.privacy', 'u-officer'));
  const sent = await planner.call('POST', '/api/referrals', REFERRAL('org.foodbank', '000777'));
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  // Only compliance staff reach the desk, whatever they ask.
  for (const [method, path, body] of [['POST', '/api/privacy/person', { agency: 'org.stmarys', mrn: '000777' }],
    ['POST', '/api/privacy/trail', { subject_id: 's-1' }], ['POST', '/api/privacy/report', { subject_id: 's-1' }],
    ['POST', '/api/privacy/access', { referral: sent.body.referral }], ['GET', '/api/privacy/break-glass'],
    ['POST', '/api/privacy/break-glass/review', { id: 'bg-1', appropriate: true, notes: 'x' }],
    ['POST', '/api/privacy/export', { subject_id: 's-1' }], ['POST', '/api/privacy/verify', { bundle: '' }]]) {
    const r = await intake.call(method, path, body);
    assert.equal(r.status, 403, path + ' ' + JSON.stringify(r.body));
  }
  // A lookup finds a person the hospital knows, and never creates one.
  const found = await officer.call('POST', '/api/privacy/person', { agency: 'org.stmarys', mrn: '000777' });
  assert.equal(found.status, 200, JSON.stringify(found.body));
  const unknown = await officer.call('POST', '/api/privacy/person', { agency: 'org.stmarys', mrn: '999999' });
  assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
  assert.equal((await officer.call('POST', '/api/privacy/person', { agency: 'org.stmarys', mrn: '999999' })).status, 404,
    'still unknown: the first lookup created nobody');
  // The food bank has not opened it yet; once it has, the officer sees who did.
  const opened = async () => (await officer.call('POST', '/api/privacy/access', { referral: sent.body.referral })).body.entries || [];
  assert.equal((await opened()).length, 0);
  assert.equal((await intake.call('GET', '/api/referrals/' + sent.body.referral)).status, 200);
  const readers = await opened();
  assert.equal(readers.length, 1);
  assert.equal(readers[0].agency, 'org.foodbank');
  assert.equal(readers[0].actor, hub.login('org.foodbank').user);
  // Bad input: a clear error.
  for (const [path, body, code] of [['/api/privacy/person', { agency: 'not an id', mrn: '1' }, 400],
    ['/api/privacy/person', { agency: 'org.stmarys', mrn: '' }, 400],
    ['/api/privacy/report', { subject_id: found.body.subject_id, from: 'yesterday' }, 400],
    ['/api/privacy/access', {}, 400],
    ['/api/privacy/access', { subject_id: found.body.subject_id, referral: sent.body.referral }, 400],
    ['/api/privacy/break-glass/review', { id: 'bg-1', appropriate: 'yes', notes: 'x' }, 400],
    ['/api/privacy/break-glass/review', { id: 'bg-1', appropriate: true, notes: '' }, 400]]) {
    const r = await officer.call('POST', path, body);
    assert.equal(r.status, code, path + ' ' + JSON.stringify(body) + ' ' + JSON.stringify(r.body));
    assert.ok(r.body.error, path);
  }
  const garbage = await officer.call('POST', '/api/privacy/verify', { bundle: 'not a bundle' });
  assert.equal(garbage.status, 200);
  assert.equal(garbage.body.ok, false);
  assert.ok(garbage.body.problem);
  // Figures: the shelter never received this referral, so it is not in its figures.
  const shelter = await signIn('org.shelter');
  const fig = await shelter.call('GET', '/api/figures?by=agency');
  assert.equal(fig.status, 200, JSON.stringify(fig.body));
  assert.equal(fig.body.scope, 'agency:org.shelter');
  assert.ok(!(fig.body.rows || []).some((r) => r.group === 'org.foodbank'), JSON.stringify(fig.body.rows));
  const mine = await planner.call('GET', '/api/figures?by=agency');
  const fb = (mine.body.rows || []).find((r) => r.group === 'org.foodbank');
  assert.ok(fb && fb.offered.suppressed === true, 'a handful shows as <11: ' + JSON.stringify(fb));
  assert.equal((await planner.call('GET', '/api/figures?from=2026-13-01')).status, 400);
  assert.equal((await planner.call('GET', '/api/figures?by=person')).status, 400);
});

test('five wrong passwords lock the account, even for the right one', async () => {
  for (let i = 0; i < 5; i++) assert.equal((await signIn('org.privacy', 'wrong-password')).status, 401);
  const locked = await signIn('org.privacy');
  assert.equal(locked.status, 429);
});

test('the dev seed needs the token from the data dir', async () => {
  const r = await fetch(hub.url + '/api/dev/seed', { method: 'POST' });
  assert.equal(r.status, 403);
  const wrong = await fetch(hub.url + '/api/dev/seed', { method: 'POST', headers: { 'X-Careloop-Dev-Token': 'guess' } });
  assert.equal(wrong.status, 403);
});

test('the live feed moves when a referral arrives', async () => {
  const foodbank = await signIn('org.foodbank');
  assert.equal(foodbank.status, 200);
  const before = (await foodbank.call('GET', '/api/changes')).body.seq;
  const planner = await signIn('org.stmarys');
  assert.equal((await planner.call('POST', '/api/referrals', REFERRAL('org.foodbank', '000202'))).status, 200);
  let now = before;
  for (let i = 0; i < 100 && now === before; i++) {
    await new Promise((r) => setTimeout(r, 100));  // the feed is asynchronous by design
    now = (await foodbank.call('GET', '/api/changes')).body.seq;
  }
  assert.ok(now > before, 'changes moved from ' + before);
});


test('emergency access: only emergency staff of an emergency agency, with a reason and a bounded time', async () => {
  const l = hub.login('org.stmarys', 'u-ed');
  const ed = await signInAs(l);
  assert.equal(ed.status, 200);
  const ask = (who, body) => who.call('POST', '/api/emergency', { mrn: '000123', categories: ['behavioral-health'],
    reason: 'unresponsive in the emergency department', minutes: 60, ...body });
  const opened = await ask(ed, {});
  assert.equal(opened.status, 200, JSON.stringify(opened.body));
  assert.ok(opened.body.break_glass_id);
  assert.ok(BigInt(opened.body.until_unix_nanos) > BigInt(Date.now()) * 1000000n);
  // The planner (sender role) and the food bank (no emergency role) may not.
  assert.equal((await ask(await signIn('org.stmarys'), {})).status, 403);
  assert.equal((await ask(await signIn('org.foodbank'), {})).status, 403);
  for (const bad of [{ minutes: 0 }, { minutes: 2000 }, { minutes: '60' }, { categories: [] }, { reason: '' },
    { categories: ['no-such-category'] }]) {
    const r = await ask(ed, bad);
    assert.equal(r.status, 400, JSON.stringify(bad) + ' ' + JSON.stringify(r.body));
  }
});

// The food bank's admin signs in once: a TOTP code is good for one login
// (a second use of the same step is refused), so the tests share a session.
let adminSession = null;
async function admin() {
  if (adminSession) return adminSession;
  const l = hub.login('org.foodbank', 'u-admin');
  assert.ok(l.totp_secret, 'the seed prints the admin\'s second factor');
  adminSession = await signInAs({ ...l, code: totp(l.totp_secret) });
  assert.equal(adminSession.status, 200, JSON.stringify(adminSession.body));
  return adminSession;
}

test('admins need their second factor: no code, a wrong code and a replayed code are refused', async () => {
  const l = hub.login('org.foodbank', 'u-admin');
  assert.equal((await signInAs({ ...l })).status, 401, 'no code');
  const wrong = String((Number(totp(l.totp_secret)) + 1) % 1000000).padStart(6, '0');
  assert.equal((await signInAs({ ...l, code: wrong })).status, 401, 'wrong code');
  await admin();
  // The code just used, again: refused (and so is any code of a step not after it).
  assert.equal((await signInAs({ ...l, code: totp(l.totp_secret) })).status, 401, 'replayed code');
  // Staff without the admin role sign in without one, and cannot manage staff.
  const intake = await signIn('org.foodbank');
  assert.equal((await intake.call('GET', '/api/staff')).status, 403);
  assert.equal((await intake.call('POST', '/api/staff', { user: 'u-x', name: 'X', roles: ['receiver'] })).status, 403);
});

test('an admin adds a staff member: a signed directory actor, and a one-time password replaced first', async () => {
  const a = await admin();
  const added = await a.call('POST', '/api/staff', { user: 'u-case-1', name: 'Casey Worker', roles: ['receiver'] });
  assert.equal(added.status, 200, JSON.stringify(added.body));
  assert.ok(added.body.one_time_password);
  assert.equal(added.body.totp_secret, undefined, 'no second factor for a non-admin');
  // The hub lists the actor (the change was signed by the food bank as its admin).
  const agency = (await a.call('GET', '/api/agency')).body;
  const actor = agency.actors.find((x) => x.user_id === 'u-case-1');
  assert.deepEqual(actor.roles, ['receiver']);
  assert.equal(actor.inactive, false);
  // Adding them again is refused and changes nothing.
  assert.equal((await a.call('POST', '/api/staff', { user: 'u-case-1', name: 'Other', roles: ['receiver'] })).status, 409);
  // The one-time password opens only the page that replaces it.
  const casey = await signInAs({ agency: 'org.foodbank', user: 'u-case-1', password: added.body.one_time_password });
  assert.equal(casey.status, 200);
  assert.equal((await casey.call('GET', '/api/session')).body.staff.must_change_password, true);
  const early = await casey.call('GET', '/api/inbox');
  assert.equal(early.status, 403);
  assert.match(early.body.error, /new password/);
  const changed = await casey.call('POST', '/api/password', { old_password: added.body.one_time_password, new_password: 'casey-chose-this-one' });
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  assert.equal((await casey.call('GET', '/api/inbox')).status, 200);
  // Giving them admin enrolls a second factor, handed to the admin once.
  const promoted = await a.call('POST', '/api/staff/change', { user: 'u-case-1', name: 'Casey Worker', roles: ['receiver', 'admin'] });
  assert.equal(promoted.status, 200, JSON.stringify(promoted.body));
  assert.ok(promoted.body.totp_secret);
  // A role change ends their sessions.
  assert.equal((await casey.call('GET', '/api/inbox')).status, 401);
});

test("an admin gives only the agency's roles, never changes their own account, and only in their agency", async () => {
  const a = await admin();
  const before = (await a.call('GET', '/api/agency')).body.actors.length;
  for (const roles of [['sender'], ['compliance'], ['emergency']]) {
    const r = await a.call('POST', '/api/staff', { user: 'u-power', name: 'Power', roles });
    assert.equal(r.status, 403, roles + ': ' + JSON.stringify(r.body));
  }
  assert.equal((await a.call('GET', '/api/staff')).body.staff.some((m) => m.user_id === 'u-power'), false, 'no account made');
  assert.equal((await a.call('GET', '/api/agency')).body.actors.length, before, 'no actor made');
  for (const [path, body] of [['/api/staff/disable', { user: 'u-admin', disabled: true }],
    ['/api/staff/change', { user: 'u-admin', name: 'Jo', roles: ['receiver'] }],
    ['/api/staff/reset', { user: 'u-admin' }], ['/api/staff/remove', { user: 'u-admin' }]]) {
    assert.equal((await a.call('POST', path, body)).status, 403, path);
  }
  // Another agency's staff member is not found (the user id is looked up in the admin's agency).
  assert.equal((await a.call('POST', '/api/staff/disable', { user: 'u-planner', disabled: true })).status, 404);
  const planner = await signIn('org.stmarys');
  assert.equal((await planner.call('GET', '/api/sent')).status, 200, 'the planner is untouched');
  // Bad input: a clear error.
  assert.equal((await a.call('POST', '/api/staff', { user: 'u-bad', name: 'B', roles: 'receiver' })).status, 400);
  assert.equal((await a.call('POST', '/api/staff', { user: 'u bad/..', name: 'B', roles: ['receiver'] })).status, 400);
  assert.equal((await a.call('POST', '/api/staff', { user: 'u-none', name: 'N', roles: [] })).status, 400);
  assert.equal((await a.call('POST', '/api/staff/disable', { user: 'u-intake', disabled: 'yes' })).status, 400);
});

test("disabling an account ends its session at once and deactivates the actor; removing takes it away", async () => {
  const a = await admin();
  const added = await a.call('POST', '/api/staff', { user: 'u-temp', name: 'Temp Worker', roles: ['receiver'] });
  assert.equal(added.status, 200, JSON.stringify(added.body));
  const temp = await signInAs({ agency: 'org.foodbank', user: 'u-temp', password: added.body.one_time_password });
  assert.equal((await temp.call('POST', '/api/password', { old_password: added.body.one_time_password, new_password: 'temp-worker-password' })).status, 200);
  assert.equal((await temp.call('GET', '/api/inbox')).status, 200);
  assert.equal((await a.call('POST', '/api/staff/disable', { user: 'u-temp', disabled: true })).status, 200);
  assert.equal((await temp.call('GET', '/api/inbox')).status, 401, 'the open session ended');
  assert.equal((await signInAs({ agency: 'org.foodbank', user: 'u-temp', password: 'temp-worker-password' })).status, 401);
  let actor = (await a.call('GET', '/api/agency')).body.actors.find((x) => x.user_id === 'u-temp');
  assert.equal(actor.inactive, true, 'deactivated in the directory');
  // Enabled again: the actor is active and the person signs in.
  assert.equal((await a.call('POST', '/api/staff/disable', { user: 'u-temp', disabled: false })).status, 200);
  actor = (await a.call('GET', '/api/agency')).body.actors.find((x) => x.user_id === 'u-temp');
  assert.equal(actor.inactive, false);
  const back = await signInAs({ agency: 'org.foodbank', user: 'u-temp', password: 'temp-worker-password' });
  assert.equal(back.status, 200);
  // A reset hands out a one-time password and ends the session.
  const reset = await a.call('POST', '/api/staff/reset', { user: 'u-temp' });
  assert.ok(reset.body.one_time_password);
  assert.equal((await back.call('GET', '/api/inbox')).status, 401);
  // Removed: gone from the directory and from the edge.
  assert.equal((await a.call('POST', '/api/staff/remove', { user: 'u-temp' })).status, 200);
  assert.equal((await a.call('GET', '/api/agency')).body.actors.some((x) => x.user_id === 'u-temp'), false);
  assert.equal((await a.call('GET', '/api/staff')).body.staff.some((m) => m.user_id === 'u-temp'), false);
  assert.equal((await signInAs({ agency: 'org.foodbank', user: 'u-temp', password: reset.body.one_time_password })).status, 401);
});

// Last, so that it reads the lines of every test above.
test("no PHI in the hub's log lines", async () => {
  const logs = hub.logs();
  for (const phi of ['000123', '000777', '999999', 'SECRET-NEEDS-TEXT', 'phone 555-0100', 'Dana Planner', 'Casey Worker', 'Temp Worker']) {
    assert.equal(logs.includes(phi), false, phi + ' appears in the log');
  }
});
