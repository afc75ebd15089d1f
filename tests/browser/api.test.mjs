// The console's HTTP API against a real careloopd (issue 18): sessions,
// CSRF, roles, another agency's referral answered like a missing one,
// lockout, cookie flags, security headers, no PHI in the hub's log lines.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHub } from './hub.mjs';

let hub;
before(async () => {
  process.env.CARELOOP_LOG_LEVEL = 'info';  // every access line, for the PHI check
  hub = await startHub();
});
after(async () => { if (hub) await hub.stop(); });

// A signed-in client of one staff member: its cookie and CSRF token.
async function signIn(agency, password) {
  const l = hub.login(agency);
  const res = await fetch(hub.url + '/api/login', { method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ agency: l.agency, user: l.user, password: password ?? l.password }) });
  const body = await res.json();
  if (res.status !== 200) return { status: res.status, body };
  const cookie = res.headers.get('set-cookie');
  return { status: 200, cookie, csrf: body.csrf, cookieValue: cookie.split(';')[0],
    async call(method, path, json, { csrf = true } = {}) {
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

test("no PHI in the hub's log lines", async () => {
  const logs = hub.logs();
  for (const phi of ['000123', 'SECRET-NEEDS-TEXT', 'phone 555-0100', 'Dana Planner']) {
    assert.equal(logs.includes(phi), false, phi + ' appears in the log');
  }
});
