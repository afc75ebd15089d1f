// careloop console: the discharge planner's closed loop and the intake
// worker's inbox. No framework, no inline script (the page's CSP forbids
// it), no PHI in URLs: referral ids only, in the fragment the server never sees.
(function () {
  'use strict';
  const main = document.getElementById('main');
  const nav = document.getElementById('nav');
  const whoEl = document.getElementById('who');
  const live = document.getElementById('live');
  let session = null;       // { csrf, staff }
  let lastChange = null;    // the agency's latest change seen
  let poller = null;
  // Each navigation's number: a page whose data comes back after the person
  // has moved on is not drawn over the newer one.
  let routeGen = 0;

  // Plain words for what a case manager sees (FHIR Task codes inside).
  const STATUS_WORDS = {
    TASK_REQUESTED: 'Waiting for answer', TASK_ACCEPTED: 'Accepted', TASK_REJECTED: 'Declined',
    TASK_CANCELLED: 'Cancelled', TASK_IN_PROGRESS: 'In progress', TASK_ON_HOLD: 'On hold',
    TASK_COMPLETED: 'Completed', TASK_FAILED: 'Could not be done',
    TASK_ENTERED_IN_ERROR: 'Entered in error',
  };
  const STATUS_CODES = {
    requested: 'TASK_REQUESTED', accepted: 'TASK_ACCEPTED', rejected: 'TASK_REJECTED',
    'in-progress': 'TASK_IN_PROGRESS', 'on-hold': 'TASK_ON_HOLD', completed: 'TASK_COMPLETED',
    cancelled: 'TASK_CANCELLED',
  };
  const SERVICES = [
    ['food-insecurity', 'Food'], ['housing-instability', 'Housing'],
    ['transportation-insecurity', 'Transportation'], ['financial-insecurity', 'Money and benefits'],
    ['social-connection', 'Social connection'], ['mental-health', 'Mental health'],
  ];
  const CATEGORIES = [
    ['contact', 'Contact details'], ['social-needs', 'Social needs'],
    ['behavioral-health', 'Behavioral health'], ['clinical', 'Clinical'],
  ];
  const REASONS = [
    ['no-capacity', 'No capacity'], ['not-eligible', 'Not eligible'], ['out-of-area', 'Out of area'],
    ['service-not-offered', 'Service not offered'], ['unable-to-contact', 'Unable to contact'],
    ['declined-by-subject', 'Declined by the person'], ['duplicate', 'Duplicate'], ['other', 'Other'],
  ];

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'onclick' || k === 'onsubmit' || k === 'onchange') e.addEventListener(k.slice(2), v);
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function field(label, input) {
    const id = 'f-' + Math.random().toString(36).slice(2, 9);
    input.id = id;
    return [el('label', { for: id }, label), input];
  }
  function select(name, options, value) {
    const s = el('select', { name });
    for (const [v, text] of options) s.append(el('option', { value: v, selected: v === value }, text));
    return s;
  }
  function statusWords(s) { return STATUS_WORDS[s] || 'Sent'; }
  function serviceWords(code) { return (SERVICES.find((x) => x[0] === code) || [0, code || 'Other'])[1]; }
  function when(nanos) {
    if (!nanos || nanos === '0') return '';
    return new Date(Number(BigInt(nanos) / 1000000n)).toLocaleString();
  }
  function say(text) { live.textContent = text; }
  function base64Text(b64) {
    return new TextDecoder().decode(Uint8Array.from(atob(b64 || ''), (c) => c.charCodeAt(0)));
  }
  function hasRole(r) { return session && session.staff.roles.includes(r); }
  function homeRoute() {
    if (hasRole('receiver')) return '#/inbox';
    if (hasRole('compliance')) return '#/privacy';
    if (hasRole('sender')) return '#/sent';
    if (hasRole('emergency')) return '#/emergency';
    return hasRole('admin') ? '#/staff' : '#/';
  }

  async function api(method, path, body) {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrf;
    const res = await fetch(path, { method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body) });
    let data = {};
    try { data = await res.json(); } catch (e) { /* empty answer */ }
    if (res.status === 401 && path !== '/api/login') { session = null; showLogin(); throw new Error('Please sign in again.'); }
    if (!res.ok) throw new Error(data.error || ('The request failed (' + res.status + ')'));
    return data;
  }

  function render(gen, title, ...content) {
    if (gen !== routeGen) return;
    main.replaceChildren(el('h1', {}, title), el('div', {}, ...content));
    document.title = title + ' · careloop';
  }
  function renderNav() {
    nav.replaceChildren();
    whoEl.textContent = '';
    if (!session) return;
    const route = location.hash || '#/';
    const link = (href, text) => el('a', { href, 'aria-current': route === href ? 'page' : null }, text);
    if (hasRole('receiver')) nav.append(link('#/inbox', 'Inbox'));
    if (hasRole('sender')) nav.append(link('#/sent', 'Sent referrals'), link('#/new', 'New referral'));
    if (hasRole('sender') || hasRole('receiver')) nav.append(link('#/consents', 'Consents'));
    if (hasRole('emergency')) nav.append(link('#/emergency', 'Emergency access'));
    if (hasRole('compliance')) {
      nav.append(link('#/privacy', 'A person'), link('#/break-glass', 'Emergency reviews'), link('#/integrity', 'Integrity'));
    }
    nav.append(link('#/figures', 'Figures'));
    if (hasRole('admin')) nav.append(link('#/staff', 'Staff'));
    whoEl.append(session.staff.display_name + ' · ' + session.staff.agency_id + ' ',
      el('button', { class: 'link', onclick: logout }, 'Sign out'));
  }

  // ---- Sign in ----
  function showLogin(message) {
    stopPolling();
    renderNav();
    const form = el('form', { class: 'card', onsubmit: async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      const err = form.querySelector('.error');
      try {
        session = await api('POST', '/api/login', { agency: f.get('agency'), user: f.get('user'),
          password: f.get('password'), code: f.get('code') || '' });
        location.hash = homeRoute();
        route();
      } catch (e) { err.textContent = e.message; }
    } },
    ...field('Agency', el('input', { name: 'agency', autocomplete: 'organization', required: true })),
    ...field('User', el('input', { name: 'user', autocomplete: 'username', required: true })),
    ...field('Password', el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    ...field('Code from your authenticator app (admins)', el('input', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code' })),
    el('p', { class: 'error', role: 'alert' }, message || ''),
    el('button', { type: 'submit' }, 'Sign in'));
    render(++routeGen, 'Sign in', form);
  }
  async function logout() {
    try { await api('POST', '/api/logout'); } catch (e) { /* ended already */ }
    session = null;
    location.hash = '#/';
    showLogin();
  }

  // ---- Lists ----
  function referralRow(v, sent) {
    const m = v.manifest || {};
    const other = sent ? (v.recipient_agency || (v.unassigned ? 'nobody yet' : '')) : v.sender_agency;
    return el('tr', {},
      el('td', {}, el('a', { href: '#/referral/' + v.referral }, serviceWords(m.service_category))),
      el('td', {}, other),
      el('td', {}, (m.priority || 'ROUTINE').toLowerCase()),
      el('td', {}, el('span', { class: 'status' }, v.unassigned ? 'Nobody could take it' : statusWords(v.status))));
  }
  async function showList(sent, filter, gen = routeGen) {
    const data = await api('GET', sent ? '/api/sent' : '/api/inbox');
    const all = data.referrals || [];
    const counts = {};
    for (const v of all) counts[v.status] = (counts[v.status] || 0) + 1;
    const tabs = el('div', { class: 'tabs', role: 'group', 'aria-label': 'Show' },
      el('button', { 'aria-pressed': String(!filter), onclick: () => showList(sent, null) }, 'All (' + all.length + ')'),
      Object.keys(STATUS_WORDS).filter((s) => counts[s]).map((s) =>
        el('button', { 'aria-pressed': String(filter === s), onclick: () => showList(sent, s) },
          statusWords(s) + ' (' + counts[s] + ')')));
    const shown = all.filter((v) => !filter || v.status === filter);
    const table = shown.length === 0 ? el('p', { class: 'notice' }, sent ? 'No referrals sent yet.' : 'Nothing in the inbox.')
      : el('table', {}, el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Service'),
        el('th', { scope: 'col' }, sent ? 'To' : 'From'), el('th', { scope: 'col' }, 'Priority'),
        el('th', { scope: 'col' }, 'Status'))),
      el('tbody', {}, shown.map((v) => referralRow(v, sent))));
    render(gen, sent ? 'Sent referrals' : 'Inbox', tabs, table, sent ? null : await capacityCard());
  }

  // The receiving agency's open places, reported per service.
  async function capacityCard() {
    let a;
    try { a = await api('GET', '/api/agency'); } catch (e) { return null; }
    if (!(a.services || []).length) return null;
    const now = new Map((a.capacity || []).map((c) => [c.service, c.open_now]));
    return el('div', { class: 'card' }, el('h2', {}, 'Open places'), (a.services || []).map((svc) => {
      const err = el('span', { class: 'error', role: 'alert' });
      const form = el('form', { 'data-form': 'capacity', onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          await api('POST', '/api/capacity', { service: svc, open_slots: Number(new FormData(form).get('slots')) });
          say('Open places reported.');
          route();
        } catch (e) { err.textContent = e.message; }
      } }, ...field(serviceWords(svc) + ': open places now' + (now.has(svc) ? ' (' + now.get(svc) + ')' : ''),
        el('input', { name: 'slots', type: 'number', min: '0', max: '100000', required: true, value: now.has(svc) ? String(Math.max(0, now.get(svc))) : '' })),
      el('button', { type: 'submit' }, 'Report'), err);
      return form;
    }));
  }

  // ---- New referral ----
  async function showNew(gen = routeGen) {
    const recipients = select('recipient', [['', 'Loading…']], '');
    const service = select('service', SERVICES, 'food-insecurity');
    async function loadRecipients() {
      try {
        const d = await api('GET', '/api/recipients?service=' + encodeURIComponent(service.value));
        recipients.replaceChildren(...(d.agencies || []).map((a) => el('option', { value: a.agency_id }, a.name + ' (' + a.agency_id + ')')));
        if (!recipients.options.length) recipients.append(el('option', { value: '' }, 'No agency offers this service'));
        updatePreview();
      } catch (e) { recipients.replaceChildren(el('option', { value: '' }, e.message)); }
    }
    service.addEventListener('change', loadRecipients);
    // Or let the hub choose: the agencies its routing ranks for the person's
    // postal code and language, best first, with why (asked before sending;
    // the hub ranks again when it routes).
    const how = el('fieldset', {}, el('legend', {}, 'Choose the agency'),
      ['named', 'best'].map((v) => {
        const id = 'how-' + v;
        return el('div', {}, el('input', { type: 'radio', id, name: 'how', value: v, checked: v === 'named' }),
          el('label', { for: id, class: 'inline' }, v === 'named' ? 'I choose the agency' : 'The best match near the person'));
      }));
    const postal = el('input', { name: 'postal_code', autocomplete: 'off', inputmode: 'numeric' });
    const language = select('language', [['', 'No preference'], ['en', 'English'], ['es', 'Spanish'], ['vi', 'Vietnamese'], ['zh', 'Chinese']], '');
    const ranking = el('div', { id: 'ranking', 'aria-live': 'polite' });
    const named = el('div', {}, ...field('Send to', recipients));
    const best = el('div', { hidden: true }, ...field('The person\'s postal code', postal), ...field('Preferred language', language), ranking);
    let bestAgency = '';
    const byCriteria = () => how.querySelector('input[value=best]').checked;
    const target = () => (byCriteria() ? bestAgency : recipients.value);
    async function rank() {
      bestAgency = '';
      if (!postal.value) { ranking.replaceChildren(); return; }
      try {
        const r = await api('POST', '/api/candidates', { service: service.value, postal_code: postal.value, language: language.value });
        const list = r.candidates || [];
        const first = list.find((c) => c.eligible);
        bestAgency = first ? first.agency_id : '';
        ranking.replaceChildren(el('h2', {}, 'Agencies, best first'), list.length === 0
          ? el('p', { class: 'notice' }, 'No agency offers this service.')
          : el('ol', {}, list.map((c) => el('li', { class: c.eligible ? 'will-share' : 'notice' },
            (c.name || c.agency_id) + (c.eligible ? '' : ' (cannot take it now)') + ': ' + (c.reasons || []).join('; ')))),
        first ? null : el('p', { class: 'error' }, 'No agency can take it now: the hub would tell you it is unassigned.'));
        updatePreview();
      } catch (e) { ranking.replaceChildren(el('p', { class: 'error' }, e.message)); }
    }
    how.addEventListener('change', () => {
      named.hidden = byCriteria();
      best.hidden = !byCriteria();
      if (byCriteria()) rank(); else updatePreview();
    });
    postal.addEventListener('change', rank);
    language.addEventListener('change', rank);
    service.addEventListener('change', () => { if (byCriteria()) rank(); });
    const sections = el('div', {});
    function addSection(category, text) {
      const n = sections.children.length + 1;
      const kind = select('category', CATEGORIES, category);
      kind.addEventListener('change', updatePreview);
      const box = el('fieldset', { class: 'card' }, el('legend', {}, 'Section ' + n),
        ...field('What kind of information', kind),
        ...field('Text', el('textarea', { name: 'text' }, text || '')));
      sections.append(box);
      updatePreview();
    }
    // Before sending: what the person's consent lets the chosen agency see,
    // asked of the hub per category (nothing is sent or shared by asking).
    const preview = el('div', { class: 'card', id: 'preview', 'aria-live': 'polite' },
      el('p', { class: 'notice' }, 'Enter the MRN and choose the agency to see what their consent lets the agency see.'));
    const mrn = el('input', { name: 'mrn', required: true, autocomplete: 'off' });
    mrn.addEventListener('change', updatePreview);
    recipients.addEventListener('change', updatePreview);
    async function updatePreview() {
      if (!mrn.value || !target()) return;
      const kinds = [...sections.children].map((box) => box.querySelector('select').value);
      try {
        const r = await api('POST', '/api/preview', { mrn: mrn.value, recipient: target(),
          categories: [...new Set(kinds)] });
        const byKind = new Map((r.decisions || []).map((d) => [d.category, d]));
        preview.replaceChildren(el('h2', {}, 'Before you send'),
          byCriteria() ? el('p', { class: 'notice' }, 'For the agency ranked first.') : null, el('ul', {}, kinds.map((k, i) => {
          const d = byKind.get(k) || {};
          const label = (CATEGORIES.find((c) => c[0] === k) || [0, k])[1];
          return el('li', { class: d.permit ? 'will-share' : 'will-withhold' }, 'Section ' + (i + 1) + ' (' + label + '): ' +
            (d.permit ? 'will be shared' : 'will be withheld — ' + (d.reason || 'consent does not cover it')));
        })));
      } catch (e) { preview.replaceChildren(el('p', { class: 'error' }, e.message)); }
    }
    addSection('contact', '');
    addSection('social-needs', '');
    const err = el('p', { class: 'error', role: 'alert' });
    const form = el('form', { class: 'card', 'data-form': 'new', onsubmit: async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      const secs = [...sections.children].map((box, i) => ({ id: 's' + (i + 1),
        category: box.querySelector('select').value, text: box.querySelector('textarea').value }))
        .filter((s) => s.text.trim() !== '');
      try {
        const to = byCriteria() ? { postal_code: postal.value, language: language.value } : { recipient: recipients.value };
        const r = await api('POST', '/api/referrals', { mrn: f.get('mrn'), service: service.value,
          reason: f.get('reason'), priority: f.get('priority'), ...to, sections: secs });
        const withheld = (r.withheld || []).length;
        if (byCriteria()) {
          sessionStorage.setItem('routed', 'The hub chose ' + (r.recipient_agency || 'nobody yet') + ' from ' +
            (r.candidates || []).length + ' agencies: ' + (r.candidates || []).filter((c) => c.eligible)
            .map((c) => c.agency_id + ' (' + (c.reasons || []).join('; ') + ')').join(', then ') + '.');
        }
        say('Referral sent.');
        location.hash = '#/referral/' + r.referral;
        if (withheld) sessionStorage.setItem('notice', withheld + ' section(s) were withheld: the person\'s consent does not cover them for this agency.');
      } catch (e) { err.textContent = e.message; }
    } },
    ...field('Medical record number (MRN)', mrn),
    ...field('Service needed', service),
    ...field('Reason (a short code, no details)', el('input', { name: 'reason', required: true, value: 'discharge follow-up' })),
    ...field('Priority', select('priority', [['routine', 'Routine'], ['urgent', 'Urgent'], ['asap', 'As soon as possible'], ['stat', 'Immediately']], 'urgent')),
    how, named, best,
    el('h2', {}, 'What to share'),
    el('p', { class: 'notice' }, 'Each section is shared only if the person\'s consent covers it for the receiving agency.'),
    sections,
    el('button', { type: 'button', class: 'secondary', onclick: () => addSection('behavioral-health', '') }, 'Add a section'),
    preview,
    el('button', { type: 'button', class: 'secondary', onclick: updatePreview }, 'Check what will be shared'),
    err,
    el('button', { type: 'submit' }, 'Send referral'));
    render(gen, 'New referral', form);
    loadRecipients();
  }

  // ---- One referral ----
  function actionsFor(v) {
    const box = el('div', { class: 'card' }, el('h2', {}, 'What next'));
    const mine = session.staff.agency_id;
    const isRecipient = v.recipient_agency === mine && v.sender_agency !== mine;
    const err = el('p', { class: 'error', role: 'alert' });
    async function move(status, extra) {
      try {
        await api('POST', '/api/referrals/' + v.referral + '/status', Object.assign({ status }, extra || {}));
        say('Status changed to ' + statusWords(STATUS_CODES[status]) + '.');
        await showReferral(v.referral);
      } catch (e) { err.textContent = e.message; }
    }
    function withReason(label, status) {
      const form = el('form', { class: 'card', 'data-form': status, onsubmit: (ev) => {
        ev.preventDefault();
        const f = new FormData(form);
        move(status, { reason_code: f.get('code'), reason_text: f.get('text') });
      } }, ...field('Reason', select('code', REASONS, 'no-capacity')),
      ...field('Note (no personal details)', el('input', { name: 'text' })),
      el('button', { type: 'submit' }, label));
      return form;
    }
    const s = v.status;
    if (isRecipient && s === 'TASK_REQUESTED') {
      box.append(el('button', { onclick: () => move('accepted') }, 'Accept'),
        el('details', {}, el('summary', {}, 'Decline'), withReason('Decline', 'rejected')));
    }
    if (isRecipient && (s === 'TASK_ACCEPTED' || s === 'TASK_ON_HOLD')) {
      box.append(el('button', { onclick: () => move('in-progress') }, 'Mark in progress'));
    }
    if (isRecipient && (s === 'TASK_ACCEPTED' || s === 'TASK_IN_PROGRESS')) {
      box.append(el('details', {}, el('summary', {}, 'Put on hold'), withReason('Put on hold', 'on-hold')));
      const done = el('form', { class: 'card', 'data-form': 'complete', onsubmit: (ev) => {
        ev.preventDefault();
        const f = new FormData(done);
        move('completed', { provided: f.get('provided'), enrolment: f.get('enrolment') });
      } }, ...field('What was provided', el('input', { name: 'provided', required: true })),
      ...field('Enrolment', select('enrolment', [['enrolled', 'Enrolled'], ['waitlisted', 'Waitlisted'], ['declined', 'Declined']], 'enrolled')),
      el('button', { type: 'submit' }, 'Complete'));
      box.append(el('details', {}, el('summary', {}, 'Complete with outcome'), done));
    }
    if (v.sender_agency === mine && !['TASK_COMPLETED', 'TASK_CANCELLED', 'TASK_REJECTED', 'TASK_FAILED'].includes(s)) {
      box.append(el('details', {}, el('summary', {}, 'Cancel this referral'), withReason('Cancel referral', 'cancelled')));
    }
    box.append(err);
    return box.children.length > 2 ? box : null;
  }
  function thread(v, keys) {
    const entries = (v.thread || []).map((t) => {
      let name = t.by_user;
      try { name = CareloopVerify.parseEnvelope(Uint8Array.from(atob(t.message_envelope || ''), (c) => c.charCodeAt(0))).displayName || name; } catch (e) { /* the id then */ }
      const mark = el('p', { class: 'checking', role: 'status' }, 'Checking the signature…');
      CareloopVerify.verifyMessage(t, v, (keys || {})[t.by_agency]).then((r) => {
        mark.className = r.ok ? 'msg-verified' : 'msg-unverified';
        mark.textContent = r.ok ? '✓ Verified: signed by ' + (r.signer.name || r.signer.user) + ' at ' + t.by_agency + '. Checked in this browser.'
          : '✗ Not verified — do not rely on this message. ' + r.problems.join(' ');
      });
      return el('li', { class: 'card' }, el('strong', {}, name + ' (' + t.by_agency + ')'), ' · ' + when(t.at_unix_nanos), mark,
        (t.sections || []).map((s) => el('div', { class: 'section' }, base64Text(s.content))),
        (t.withheld || []).map((w) => el('div', { class: 'withheld' }, 'Withheld: ' + w.reason)));
    });
    const err = el('p', { class: 'error', role: 'alert' });
    const form = el('form', { class: 'card', 'data-form': 'message', onsubmit: async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      try {
        const r = await api('POST', '/api/referrals/' + v.referral + '/messages', { category: f.get('category'), text: f.get('text') });
        say((r.withheld || []).length ? 'Message kept from the other agency: consent does not cover it.' : 'Message sent.');
        await showReferral(v.referral);
      } catch (e) { err.textContent = e.message; }
    } }, ...field('What kind of information', select('category', CATEGORIES, 'contact')),
    ...field('Message', el('textarea', { name: 'text', required: true })), err,
    el('button', { type: 'submit' }, 'Send message'));
    return [el('h2', {}, 'Messages'), entries.length ? el('ul', { class: 'thread' }, entries) : el('p', { class: 'notice' }, 'No messages yet.'),
      el('details', {}, el('summary', {}, 'Write a message'), form)];
  }
  function closedLoop(v) {
    const steps = [
      ['Sent', true],
      ['Delivered', v.delivered_unix_nanos && v.delivered_unix_nanos !== '0'],
      ['Opened', v.viewed_unix_nanos && v.viewed_unix_nanos !== '0'],
      ['Accepted', ['TASK_ACCEPTED', 'TASK_IN_PROGRESS', 'TASK_ON_HOLD', 'TASK_COMPLETED'].includes(v.status)],
      ['Completed', v.status === 'TASK_COMPLETED'],
    ];
    return el('ol', { class: 'tabs', 'aria-label': 'Closed loop' }, steps.map(([t, done]) =>
      el('li', { class: 'status', 'data-done': done ? 'yes' : 'no' }, (done ? '✓ ' : '○ ') + t)));
  }
  async function showReferral(ref, gen = routeGen) {
    const data = await api('GET', '/api/referrals/' + ref);
    const v = data.referral;
    const m = v.manifest || {};
    const mark = el('div', { class: 'checking', role: 'status', id: 'verified-mark' }, 'Checking the sender\'s signature…');
    const notice = sessionStorage.getItem('notice');
    sessionStorage.removeItem('notice');
    const routed = sessionStorage.getItem('routed');
    sessionStorage.removeItem('routed');
    const withheldIds = new Set((v.withheld || []).map((w) => w.section_id));
    const sections = (v.sections || []).map((s) => el('div', {},
      el('h3', {}, (CATEGORIES.find((c) => c[0] === s.category) || [0, s.category])[1],
        withheldIds.has(s.section_id) ? ' (not shared with ' + (v.recipient_agency || 'the recipient') + ')' : ''),
      el('div', { class: 'section' }, base64Text(s.content))));
    const withheld = (v.withheld || []).map((w) => el('div', { class: 'withheld' },
      'Withheld: ' + ((CATEGORIES.find((c) => c[0] === w.category) || [0, w.category])[1]) + ' — ' + w.reason));
    const outcome = v.outcome && v.outcome.provided ? el('p', {}, 'Outcome: ' + v.outcome.provided + (v.outcome.enrolment_status ? ' (' + v.outcome.enrolment_status + ')' : '')) : null;
    const history = el('details', {}, el('summary', {}, 'Details'),
      el('p', {}, 'Referral ' + v.referral + ', stream version ' + (v.version || 0) + ', routing attempt ' + (v.attempt || 1)),
      el('ul', {}, (v.history || []).map((h) => el('li', {}, JSON.stringify(h)))));
    render(gen, serviceWords(m.service_category) + ' referral',
      routed ? el('p', { class: 'notice', role: 'status', id: 'routed' }, routed) : null,
      notice ? el('p', { class: 'withheld', role: 'status' }, notice) : null,
      el('div', { class: 'grid' },
        el('div', {}, el('strong', {}, 'From: '), v.sender_agency),
        el('div', {}, el('strong', {}, 'To: '), v.recipient_agency || 'nobody yet'),
        el('div', {}, el('strong', {}, 'Priority: '), (m.priority || 'ROUTINE').toLowerCase()),
        el('div', {}, el('strong', {}, 'Status: '), el('span', { class: 'status', id: 'status' }, v.unassigned ? 'Nobody could take it' : statusWords(v.status)))),
      closedLoop(v), outcome, mark,
      el('h2', {}, 'What was shared'), sections.length ? sections : el('p', { class: 'notice' }, 'Nothing you may see.'),
      withheld, actionsFor(v), thread(v, data.author_keys), history);
    const result = await CareloopVerify.verifyReferral(v, data.sender_keys);
    if (result.ok) {
      mark.className = 'verified';
      mark.textContent = '✓ Verified: signed by ' + (result.signer.name || result.signer.user) + ' at ' + v.sender_agency +
        ', and every section shown (' + result.sections + ') is exactly what they sent. Checked in this browser.';
    } else {
      mark.className = 'unverified';
      mark.replaceChildren(el('strong', {}, '✗ Not verified — do not rely on this referral. '), result.problems.join(' '));
    }
  }

  // ---- Consents: look up, record (the signed form stays in the browser:
  // only its SHA-256 goes to the hub), revoke ----
  const CONSENT_WORDS = { CONSENT_ACTIVE: 'Active', CONSENT_REVOKED: 'Revoked', CONSENT_EXPIRED: 'Expired',
    CONSENT_ENTERED_IN_ERROR: 'Entered in error' };
  function consentList(list, reload) {
    if (!list.length) return el('p', { class: 'notice' }, 'No consent of this person is on record for you.');
    const rows = list.map((rec) => {
      const c = rec.consent || {};
      const p = c.provision || {};
      const to = (p.recipients || []).map((r) => (r.network ? 'any agency of the network' : (r.agency_id || r.agency_kind))).join(', ');
      const what = (p.categories || []).map((k) => (CATEGORIES.find((x) => x[0] === k) || [0, k])[1]).join(', ');
      const err = el('span', { class: 'error', role: 'alert' });
      const revoke = c.status === 'CONSENT_ACTIVE' && c.recording_agency === session.staff.agency_id
        ? el('details', {}, el('summary', {}, 'Revoke'), el('form', { 'data-form': 'revoke', onsubmit: async (ev) => {
          ev.preventDefault();
          try {
            await api('POST', '/api/consents/revoke', { consent_id: c.consent_id, reason: new FormData(ev.target).get('reason') });
            say('Consent revoked.');
            reload();
          } catch (e) { err.textContent = e.message; }
        } }, ...field('Why (no personal details)', el('input', { name: 'reason', required: true })),
        el('button', { type: 'submit' }, 'Revoke consent'), err)) : null;
      return el('tr', {}, el('td', {}, el('span', { class: 'status' }, CONSENT_WORDS[c.status] || c.status)),
        el('td', {}, what), el('td', {}, to), el('td', {}, (p.purposes || []).join(', ')),
        el('td', {}, c.period && c.period.end_unix_nanos ? when(c.period.end_unix_nanos) : 'no end'), el('td', {}, revoke));
    });
    return el('table', {}, el('thead', {}, el('tr', {}, ['Status', 'Covers', 'To', 'For', 'Until', ''].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows));
  }
  function recordForm(mrn, reload) {
    const err = el('p', { class: 'error', role: 'alert' });
    const kinds = el('fieldset', {}, el('legend', {}, 'What it covers'), CATEGORIES.map(([k, label]) => {
      const id = 'c-' + k;
      return el('div', {}, el('input', { type: 'checkbox', id, name: 'category', value: k }), el('label', { for: id, class: 'inline' }, label));
    }));
    const file = el('input', { type: 'file', name: 'form', required: true, accept: 'application/pdf,image/png,image/jpeg' });
    // To whom: the whole network, or only the agencies the person named.
    const some = el('div', { hidden: true });
    const to = el('fieldset', {}, el('legend', {}, 'To whom'), [['network', 'Any agency of the network'], ['some', 'Only these agencies']].map(([v, label]) => {
      const id = 'to-' + v;
      return el('div', {}, el('input', { type: 'radio', id, name: 'to', value: v, checked: v === 'network' }), el('label', { for: id, class: 'inline' }, label));
    }), some);
    to.addEventListener('change', async () => {
      some.hidden = !to.querySelector('input[value=some]').checked;
      if (some.hidden || some.children.length) return;
      try {
        const d = await api('GET', '/api/recipients');
        some.replaceChildren(...(d.agencies || []).map((a) => {
          const id = 'to-' + a.agency_id;
          return el('div', {}, el('input', { type: 'checkbox', id, name: 'recipient', value: a.agency_id }), el('label', { for: id, class: 'inline' }, a.name));
        }));
      } catch (e) { some.replaceChildren(el('p', { class: 'error' }, e.message)); }
    });
    const form = el('form', { class: 'card', 'data-form': 'consent', onsubmit: async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      try {
        if (!file.files.length) throw new Error('Attach the signed consent form.');
        const bytes = await file.files[0].arrayBuffer();
        const digest = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');
        const network = f.get('to') !== 'some';
        await api('POST', '/api/consents', { mrn, categories: f.getAll('category'), network,
          recipients: network ? [] : f.getAll('recipient'),
          purposes: [f.get('purpose')], until: f.get('until') || '', evidence_sha256: digest,
          evidence_media_type: file.files[0].type || 'application/pdf' });
        say('Consent recorded.');
        reload();
      } catch (e) { err.textContent = e.message; }
    } }, el('h2', {}, 'Record a consent the person signed'),
    el('p', { class: 'notice' }, 'The form itself stays with you: only its fingerprint (SHA-256) is recorded.'),
    kinds, to, ...field('Purpose', select('purpose', [['care-coordination', 'Care coordination']], 'care-coordination')),
    ...field('Valid until (leave empty for no end)', el('input', { type: 'date', name: 'until' })),
    ...field('Signed consent form', file), err, el('button', { type: 'submit' }, 'Record consent'));
    return form;
  }
  async function showConsents(gen = routeGen) {
    const results = el('div', { id: 'consents' });
    const mrn = el('input', { name: 'mrn', required: true, autocomplete: 'off' });
    const err = el('p', { class: 'error', role: 'alert' });
    async function lookup() {
      err.textContent = '';
      try {
        const r = await api('POST', '/api/consents/find', { mrn: mrn.value });
        results.replaceChildren(el('h2', {}, 'On record'), consentList(r.consents || [], lookup), recordForm(mrn.value, lookup));
      } catch (e) { err.textContent = e.message; }
    }
    const find = el('form', { class: 'card', 'data-form': 'find', onsubmit: (ev) => { ev.preventDefault(); lookup(); } },
      ...field('Medical record number (MRN)', mrn), el('button', { type: 'submit' }, 'Look up consents'), err);
    render(gen, 'Consents', find, results);
  }

  // ---- Emergency access (break-glass): reasoned, time-limited, reviewed ----
  function showEmergency(gen = routeGen) {
    const err = el('p', { class: 'error', role: 'alert' });
    const done = el('div', { 'aria-live': 'polite' });
    const kinds = el('fieldset', {}, el('legend', {}, 'What you need to see'), CATEGORIES.map(([k, label]) => {
      const id = 'e-' + k;
      return el('div', {}, el('input', { type: 'checkbox', id, name: 'category', value: k }), el('label', { for: id, class: 'inline' }, label));
    }));
    const form = el('form', { class: 'card', 'data-form': 'emergency', onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const f = new FormData(form);
      try {
        const r = await api('POST', '/api/emergency', { mrn: f.get('mrn'), categories: f.getAll('category'),
          reason: f.get('reason'), minutes: Number(f.get('minutes')) });
        say('Emergency access opened.');
        done.replaceChildren(el('div', { class: 'withheld', role: 'status', id: 'emergency-open' },
          'Emergency access is open until ' + when(r.until_unix_nanos) + '. It is recorded, and a compliance officer will review it.',
          el('details', {}, el('summary', {}, 'Details'), el('p', {}, 'Break-glass ' + r.break_glass_id))));
        form.reset();
      } catch (e) { err.textContent = e.message; }
    } },
    el('p', { class: 'notice' }, 'Only in a medical emergency, when the person cannot consent. Every use is recorded and reviewed.'),
    ...field('Medical record number (MRN)', el('input', { name: 'mrn', required: true, autocomplete: 'off' })),
    kinds,
    ...field('Why (a short reason, no personal details)', el('input', { name: 'reason', required: true })),
    ...field('For how long', select('minutes', [['30', '30 minutes'], ['60', '1 hour'], ['240', '4 hours']], '60')),
    err, el('button', { type: 'submit' }, 'Open emergency access'));
    render(gen, 'Emergency access', done, form);
  }

  // ---- A new password: a one-time one opens only this page ----
  function showNewPassword(gen = routeGen) {
    const err = el('p', { class: 'error', role: 'alert' });
    const form = el('form', { class: 'card', 'data-form': 'password', onsubmit: async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      if (f.get('new_password') !== f.get('again')) { err.textContent = 'The two new passwords differ.'; return; }
      try {
        await api('POST', '/api/password', { old_password: f.get('old_password'), new_password: f.get('new_password') });
        session = await api('GET', '/api/session');
        say('Password changed.');
        location.hash = homeRoute();
        route();
      } catch (e) { err.textContent = e.message; }
    } },
    el('p', { class: 'notice' }, 'You signed in with a one-time password. Choose your own before you go on.'),
    ...field('One-time password', el('input', { name: 'old_password', type: 'password', autocomplete: 'current-password', required: true })),
    ...field('New password (at least 12 characters)', el('input', { name: 'new_password', type: 'password', autocomplete: 'new-password', required: true, minlength: '12' })),
    ...field('New password again', el('input', { name: 'again', type: 'password', autocomplete: 'new-password', required: true, minlength: '12' })),
    err, el('button', { type: 'submit' }, 'Set password'));
    render(gen, 'Choose a password', form);
  }

  // ---- Staff (an agency's admins): who may act for the agency ----
  const ROLE_WORDS = { sender: 'Sends referrals', receiver: 'Takes referrals', compliance: 'Compliance',
    emergency: 'Emergency access', admin: 'Manages staff' };
  function rolePicker(roles, chosen) {
    return el('fieldset', {}, el('legend', {}, 'What they may do'), roles.map((r) => {
      const id = 'r-' + r + '-' + Math.random().toString(36).slice(2, 7);
      return el('div', {}, el('input', { type: 'checkbox', id, name: 'role', value: r, checked: chosen.includes(r) }),
        el('label', { for: id, class: 'inline' }, ROLE_WORDS[r] || r));
    }));
  }
  // What the admin hands the person, once (it is not shown again).
  function enrollmentCard(name, e) {
    const items = [];
    if (e.one_time_password) items.push(el('li', {}, 'One-time password: ', el('code', { 'data-secret': 'password' }, e.one_time_password)));
    if (e.totp_secret) items.push(el('li', {}, 'Second factor (add to an authenticator app): ', el('code', { 'data-secret': 'totp' }, e.totp_secret)));
    if (!items.length) return null;
    return el('div', { class: 'card', role: 'status' }, el('h2', {}, 'Hand these to ' + name + ' in person'),
      el('ul', {}, items), el('p', { class: 'notice' }, 'They are shown only now. The password must be changed at the first sign-in.'));
  }
  async function showStaff(gen = routeGen, handed = null) {
    const [data, agency] = await Promise.all([api('GET', '/api/staff'), api('GET', '/api/agency')]);
    const roles = [...new Set([...(agency.roles || []), 'admin'])];
    const listed = new Map((agency.actors || []).map((a) => [a.user_id, a]));
    const inDirectory = (m) => {
      const a = listed.get(m.user_id);
      if (!a) return 'Not listed';
      return a.inactive ? 'Deactivated' : 'Listed';
    };
    const reload = (h) => showStaff(routeGen, h);
    async function act(path, body, said, name) {
      const r = await api('POST', path, body);
      say(said);
      reload(name ? enrollmentCard(name, r) : null);
    }
    const rows = (data.staff || []).map((m) => {
      const self = m.user_id === session.staff.user_id;
      const err = el('span', { class: 'error', role: 'alert' });
      const guard = (fn) => async (ev) => { if (ev) ev.preventDefault(); try { await fn(); } catch (e) { err.textContent = e.message; } };
      const change = el('form', { 'data-form': 'staff-change', onsubmit: guard(() => {
        const f = new FormData(change);
        return act('/api/staff/change', { user: m.user_id, name: f.get('name'), roles: f.getAll('role') }, 'Roles changed.', m.display_name);
      }) }, ...field('Name', el('input', { name: 'name', required: true, value: m.display_name })),
      rolePicker(roles, m.roles), el('button', { type: 'submit' }, 'Save'));
      const actions = self ? el('span', { class: 'notice' }, 'You (another admin changes your account)') : el('div', {},
        el('button', { class: 'secondary', onclick: guard(() => act('/api/staff/disable', { user: m.user_id, disabled: !m.disabled },
          m.disabled ? 'Account enabled.' : 'Account disabled; their sessions have ended.')) }, m.disabled ? 'Enable' : 'Disable'),
        el('button', { class: 'secondary', onclick: guard(() => act('/api/staff/reset', { user: m.user_id }, 'Password reset.', m.display_name)) }, 'Reset password'),
        el('details', {}, el('summary', {}, 'Change name or roles'), change),
        el('details', {}, el('summary', {}, 'Remove'), el('p', { class: 'notice' }, 'Removes them from the directory; what they signed stays on record.'),
          el('button', { onclick: guard(() => act('/api/staff/remove', { user: m.user_id }, 'Removed.')) }, 'Remove ' + m.display_name)), err);
      return el('tr', { 'data-user': m.user_id }, el('td', {}, m.display_name), el('td', {}, m.user_id),
        el('td', {}, m.roles.map((r) => ROLE_WORDS[r] || r).join(', ')),
        el('td', {}, el('span', { class: 'status' }, m.disabled ? 'Disabled' : 'Active')),
        el('td', {}, inDirectory(m)),
        el('td', {}, m.has_second_factor ? 'Set' : ''), el('td', {}, actions));
    });
    const table = el('table', {}, el('thead', {}, el('tr', {}, ['Name', 'User', 'May', 'Account', 'In the directory', 'Second factor', ''].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows));
    const err = el('p', { class: 'error', role: 'alert' });
    const add = el('form', { class: 'card', 'data-form': 'staff-add', onsubmit: async (ev) => {
      ev.preventDefault();
      const f = new FormData(add);
      try {
        await act('/api/staff', { user: f.get('user'), name: f.get('name'), roles: f.getAll('role') }, 'Staff member added.', f.get('name'));
      } catch (e) { err.textContent = e.message; }
    } }, el('h2', {}, 'Add a staff member'),
    ...field('User id (letters, digits, dots, dashes)', el('input', { name: 'user', required: true, autocomplete: 'off', pattern: '[A-Za-z0-9._-]+' })),
    ...field('Name', el('input', { name: 'name', required: true, autocomplete: 'off' })),
    rolePicker(roles, []), err, el('button', { type: 'submit' }, 'Add'));
    render(gen, 'Staff', handed, table, add);
  }

  // ---- Live updates: ask the edge for the agency's latest change ----
  function stopPolling() { if (poller) clearInterval(poller); poller = null; lastChange = null; }
  function startPolling() {
    if (poller) return;
    poller = setInterval(async () => {
      if (!session) return;
      try {
        const c = await api('GET', '/api/changes');
        if (lastChange !== null && c.seq !== lastChange && !busy()) { say('Updated.'); route(); }
      } catch (e) { /* the next tick tries again */ }
    }, 2000);
  }
  // Someone is typing: keep the page as it is.
  function busy() {
    const a = document.activeElement;
    if (a && (a.tagName === 'INPUT' || a.tagName === 'TEXTAREA' || a.tagName === 'SELECT')) return true;
    return ['#/new', '#/consents', '#/staff', '#/emergency', '#/privacy', '#/break-glass', '#/integrity',
      '#/figures'].includes(location.hash) ||
      [...document.querySelectorAll('details[open]')].length > 0;
  }

  async function route() {
    if (!session) return showLogin();
    if (session.staff.must_change_password) { renderNav(); return showNewPassword(++routeGen); }
    renderNav();
    startPolling();
    const h = location.hash || '#/';
    const gen = ++routeGen;
    try {
      // What the page shows is at least this new: a change after it redraws.
      lastChange = (await api('GET', '/api/changes')).seq;
      if (h.startsWith('#/referral/')) return await showReferral(h.slice('#/referral/'.length), gen);
      if (h === '#/sent') return await showList(true, null, gen);
      if (h === '#/new') return await showNew(gen);
      if (h === '#/consents') return await showConsents(gen);
      if (h === '#/emergency' && hasRole('emergency')) return showEmergency(gen);
      if (h === '#/figures') return await desk.showFigures(gen);
      if (hasRole('compliance')) {
        if (h === '#/break-glass') return await desk.showBreakGlass(gen, false);
        if (h === '#/integrity') return await desk.showIntegrity(gen);
        if (h === '#/privacy' || (h !== '#/staff' && !hasRole('receiver') && !hasRole('sender'))) return await desk.showPerson(gen);
      }
      if (h === '#/staff' || (!hasRole('receiver') && !hasRole('sender') && hasRole('admin'))) return await showStaff(gen);
      if (!hasRole('receiver') && !hasRole('sender') && hasRole('emergency')) return showEmergency(gen);
      if (h === '#/inbox' || hasRole('receiver')) return await showList(false, null, gen);
      return await showList(true, null, gen);
    } catch (e) {
      render(gen, 'Something went wrong', el('p', { class: 'error', role: 'alert' }, e.message));
    }
  }

  // The privacy officer's desk and the figures (desk.js).
  const desk = window.CareloopDesk({ el, field, select, api, render, when, say,
    csrf: () => (session ? session.csrf : ''), gen: () => ++routeGen });

  window.addEventListener('hashchange', route);
  (async () => {
    try { session = await api('GET', '/api/session'); } catch (e) { session = null; }
    route();
  })();
})();
