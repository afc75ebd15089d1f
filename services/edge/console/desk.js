// careloop console: the privacy officer's desk (a person's accounting of
// disclosures, consent trail and who opened their records; emergency access
// reviews; the log's integrity and export bundles) and every agency's
// referral figures. Loaded before app.js, which hands it its helpers. The
// person's record number travels in POST bodies only, never in a URL.
(function (global) {
  'use strict';

  global.CareloopDesk = function (ui) {
    const { el, field, select, api, render, when, say } = ui;

    // ---- Shared pieces ----
    function table(headers, rows, attrs) {
      return el('table', attrs || {}, el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, rows));
    }
    function csvCell(v) {
      const s = String(v === undefined || v === null ? '' : v);
      return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
    }
    function download(name, text, type) {
      const a = el('a', { href: URL.createObjectURL(new Blob([text], { type })), download: name });
      document.body.append(a);
      a.click();
      a.remove();
    }
    function csvButton(name, headers, rows) {
      return el('button', { class: 'secondary', type: 'button', 'data-csv': name, onclick: () =>
        download(name, [headers, ...rows].map((r) => r.map(csvCell).join(',')).join('\n') + '\n', 'text/csv') }, 'Download CSV');
    }
    function age(nanos) {
      if (!nanos || nanos === '0') return '';
      const s = Math.max(0, Math.round((Date.now() - Number(BigInt(nanos) / 1000000n)) / 1000));
      if (s < 2) return 'just now';
      if (s < 120) return s + ' seconds ago';
      if (s < 7200) return Math.round(s / 60) + ' minutes ago';
      if (s < 172800) return Math.round(s / 3600) + ' hours ago';
      return Math.round(s / 86400) + ' days ago';
    }
    const AUTHORITY_WORDS = { sender: 'its own record', consent: 'consent', 'break-glass': 'emergency access', compliance: 'compliance' };

    // ---- A person: accounting, trail, who opened what, export ----
    function reportPart(subject) {
      const out = el('section', { 'aria-labelledby': 'h-report' });
      const hipaa = el('input', { type: 'checkbox', id: 'p-hipaa' });
      const err = el('p', { class: 'error', role: 'alert' });
      async function load() {
        err.textContent = '';
        try {
          const r = await api('POST', '/api/privacy/report', { subject_id: subject, hipaa: hipaa.checked });
          const rows = (r.entries || []).map((e) => [when(e.disclosed_unix_nanos), e.recipient_name || e.recipient_agency,
            (e.categories || []).join(', '), e.purpose || '', e.record_type || '', (e.consent_ids || []).join(', ') || e.authority || '']);
          const headers = ['When', 'Disclosed to', 'What', 'Purpose', 'Record', 'Under'];
          body.replaceChildren(rows.length ? table(headers, rows.map((c) => el('tr', { 'data-disclosure': '' }, c.map((x) => el('td', {}, x)))), { id: 'disclosures' })
            : el('p', { id: 'disclosures' }, 'No disclosures in this period.'),
          el('div', {}, el('button', { type: 'button', class: 'secondary', onclick: () => window.print() }, 'Print'),
            csvButton('disclosures.csv', headers, rows)));
        } catch (e) { err.textContent = e.message; }
      }
      const body = el('div');
      hipaa.addEventListener('change', load);
      out.append(el('h2', { id: 'h-report' }, 'Disclosures'),
        el('div', {}, hipaa, el('label', { for: 'p-hipaa', class: 'inline' }, 'Only what HIPAA §164.528 requires to be accounted for (not treatment, payment or operations)')),
        err, body);
      load();
      return out;
    }

    function trailPart(trail) {
      const rows = (trail.entries || []).map((t) => [when(t.at_unix_nanos), t.type, [t.by_agency, t.by_user].filter(Boolean).join(' / '), t.summary || '']);
      const headers = ['When', 'What', 'By', 'Details'];
      return el('section', { 'aria-labelledby': 'h-trail' }, el('h2', { id: 'h-trail' }, 'Consent trail'),
        table(headers, rows.map((c) => el('tr', {}, c.map((x) => el('td', {}, x)))), { id: 'trail' }),
        csvButton('consent-trail.csv', headers, rows));
    }

    function accessRows(entries) {
      return entries.map((e) => {
        const sections = (e.sections || []);
        const under = [...new Set(sections.map((s) => s.consent_ids && s.consent_ids.length ? 'consent ' + s.consent_ids.join(', ')
          : s.break_glass_id ? 'emergency access ' + s.break_glass_id : AUTHORITY_WORDS[s.authority] || s.authority))].join('; ');
        return { e, cells: [when(e.at_unix_nanos), e.agency, e.actor || '(not named)', [e.record_type, e.record_id].filter(Boolean).join(' '),
          sections.map((s) => s.section_id + ' (' + s.category + ')').join(', '), under] };
      });
    }
    function accessPart(entries, p = '') {
      const headers = ['When', 'Agency', 'Staff member', 'Opened', 'Sections shown', 'Under'];
      const all = accessRows(entries);
      const records = [...new Set(all.filter((r) => r.e.record_type === 'referral').map((r) => r.e.record_id))];
      const sections = [...new Set(all.flatMap((r) => (r.e.sections || []).map((s) => s.category)))];
      const which = select('record', [['', 'Everything'], ...records.map((r) => [r, 'Referral ' + r])], '');
      const part = select('section', [['', 'Any section'], ...sections.map((c) => [c, c])], '');
      const body = el('div');
      function draw() {
        const rows = all.filter((r) => (!which.value || r.e.record_id === which.value) &&
          (!part.value || (r.e.sections || []).some((s) => s.category === part.value)));
        body.replaceChildren(table(headers, rows.map((r) => el('tr', { 'data-access': r.e.actor || '' }, r.cells.map((x) => el('td', {}, x)))), { id: p + 'access' }),
          csvButton('access.csv', headers, rows.map((r) => r.cells)));
      }
      which.addEventListener('change', draw);
      part.addEventListener('change', draw);
      draw();
      return el('section', { 'aria-labelledby': p + 'h-access' }, el('h2', { id: p + 'h-access' }, p ? 'Who opened it' : 'Who opened this person\'s records'),
        el('div', { class: 'grid' }, el('div', {}, ...field('Record', which)), el('div', {}, ...field('Section', part))), body);
    }

    // A referral: who opened it, and its bundle.
    function referralForm() {
      const result = el('div', { id: 'referral-access' });
      const err = el('p', { class: 'error', role: 'alert' });
      const form = el('form', { class: 'card', 'data-form': 'referral', onsubmit: async (ev) => {
        ev.preventDefault();
        err.textContent = '';
        const referral = new FormData(form).get('referral');
        try {
          const r = await api('POST', '/api/privacy/access', { referral });
          result.replaceChildren(accessPart(r.entries || [], 'r-'), exportPart({ referral }, 'r-'));
        } catch (e) { err.textContent = e.message; }
      } }, el('h2', {}, 'A referral'),
      ...field('Referral (sender/id, e.g. org.stmarys/r-1001)', el('input', { name: 'referral', required: true, autocomplete: 'off' })),
      err, el('button', { type: 'submit' }, 'Who opened it'));
      return [form, result];
    }

    function exportPart(subject, p = '') {
      const err = el('p', { class: 'error', role: 'alert' });
      return el('section', { 'aria-labelledby': p + 'h-export' }, el('h2', { id: p + 'h-export' }, 'Evidence'),
        el('p', { class: 'notice' }, (p ? 'A bundle holds this referral\'s events' : 'A bundle holds this person\'s events') + ' with proofs against the signed log; anyone with the hub\'s verifier key can check it offline.'),
        el('button', { type: 'button', 'data-action': 'export', onclick: async () => {
          err.textContent = '';
          try {
            const res = await fetch('/api/privacy/export', { method: 'POST', credentials: 'same-origin',
              headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': ui.csrf() },
              body: JSON.stringify(typeof subject === 'string' ? { subject_id: subject } : subject) });
            if (!res.ok) throw new Error((await res.json()).error || 'The export failed');
            download('careloop-bundle.jsonl', await res.text(), 'application/x-ndjson');
            say('Bundle downloaded.');
          } catch (e) { err.textContent = e.message; }
        } }, 'Export a bundle'), err);
    }

    async function showPerson(gen) {
      const result = el('div', { id: 'person' });
      const err = el('p', { class: 'error', role: 'alert' });
      const form = el('form', { class: 'card', 'data-form': 'person', onsubmit: async (ev) => {
        ev.preventDefault();
        err.textContent = '';
        result.replaceChildren();
        const f = new FormData(form);
        try {
          const { subject_id: subject } = await api('POST', '/api/privacy/person', { agency: f.get('agency'), mrn: f.get('mrn') });
          const [trail, access] = await Promise.all([api('POST', '/api/privacy/trail', { subject_id: subject }),
            api('POST', '/api/privacy/access', { subject_id: subject })]);
          result.replaceChildren(el('p', { role: 'status' }, 'Person ', el('code', {}, subject)),
            reportPart(subject), accessPart(access.entries || []), trailPart(trail), exportPart(subject));
        } catch (e) { err.textContent = e.message; }
      } },
      el('p', { class: 'notice' }, 'Find the person by the record number an agency knows them by. The lookup is recorded.'),
      ...field('Agency (its id, e.g. org.stmarys)', el('input', { name: 'agency', required: true, autocomplete: 'off' })),
      ...field('Record number at that agency (MRN)', el('input', { name: 'mrn', required: true, autocomplete: 'off' })),
      err, el('button', { type: 'submit' }, 'Find'));
      render(gen, 'A person\'s records', form, result, ...referralForm());
    }

    // ---- Emergency access reviews, oldest first ----
    async function showBreakGlass(gen, all) {
      const r = await api('GET', '/api/privacy/break-glass' + (all ? '?all=1' : ''));
      const records = (r.records || []).slice().sort((a, b) => Number(BigInt(a.from_unix_nanos) - BigInt(b.from_unix_nanos)));
      const reload = () => showBreakGlass(ui.gen(), all);
      const cards = records.map((b) => {
        const err = el('p', { class: 'error', role: 'alert' });
        const notes = el('textarea', { name: 'notes', required: true });
        async function review(appropriate) {
          err.textContent = '';
          if (!notes.value.trim()) { err.textContent = 'Write what the review found.'; return; }
          try {
            await api('POST', '/api/privacy/break-glass/review', { id: b.break_glass_id, appropriate, notes: notes.value });
            say('Review recorded.');
            reload();
          } catch (e) { err.textContent = e.message; }
        }
        const done = b.reviewed ? el('p', { class: 'status' }, (b.appropriate ? 'Appropriate' : 'NOT appropriate') + ' — reviewed by ' +
          [b.reviewed_by_agency, b.reviewed_by_user].filter(Boolean).join(' / ')) : el('div', {},
          ...field('Review notes', notes),
          el('button', { type: 'button', onclick: () => review(true) }, 'Appropriate'),
          el('button', { type: 'button', class: 'secondary', onclick: () => review(false) }, 'Not appropriate'), err);
        return el('article', { class: 'card', 'data-break-glass': b.break_glass_id },
          el('h2', {}, b.agency_id + ' / ' + b.user_id + ' · ' + age(b.from_unix_nanos)),
          el('p', {}, 'Reason: ', b.reason || ''), el('p', {}, 'What: ', (b.categories || []).join(', ')),
          el('p', { class: 'notice' }, 'From ' + when(b.from_unix_nanos) + ' until ' + when(b.until_unix_nanos) + ' · person ' + b.subject_id + ' · ' + b.break_glass_id),
          done);
      });
      const toggle = el('button', { type: 'button', class: 'secondary', onclick: () => showBreakGlass(ui.gen(), !all) },
        all ? 'Only those waiting for review' : 'Include reviewed');
      render(gen, 'Emergency access reviews', toggle,
        cards.length ? cards : el('p', { id: 'no-break-glass' }, all ? 'No emergency access on record.' : 'Nothing waits for review.'));
    }

    // ---- The log's integrity; checking a bundle ----
    async function showIntegrity(gen) {
      const i = await api('GET', '/api/integrity');
      const state = !i.known ? el('p', { class: 'checking', id: 'monitor' }, 'Not monitored: ' + i.problem)
        : i.ok ? el('p', { class: 'verified', id: 'monitor' }, 'The log only grew: every head since the first this edge saw is consistent.')
          : el('p', { class: 'unverified', id: 'monitor', role: 'alert' }, 'ALERT: ' + i.problem);
      const head = el('dl', { class: 'grid' }, el('div', {}, el('dt', {}, 'Log'), el('dd', {}, i.log_id)),
        el('div', {}, el('dt', {}, 'Events'), el('dd', { id: 'tree-size' }, String(i.tree_size))),
        el('div', {}, el('dt', {}, 'Signed'), el('dd', {}, when(i.signed_unix_nanos) + ' (' + age(i.signed_unix_nanos) + ')')));
      const result = el('div', { 'aria-live': 'polite' });
      const file = el('input', { type: 'file', name: 'bundle', accept: '.jsonl,application/x-ndjson,text/plain' });
      const form = el('form', { class: 'card', 'data-form': 'verify', onsubmit: async (ev) => {
        ev.preventDefault();
        result.replaceChildren();
        if (!file.files.length) { result.append(el('p', { class: 'error', role: 'alert' }, 'Choose a bundle file.')); return; }
        try {
          const r = await api('POST', '/api/privacy/verify', { bundle: await file.files[0].text() });
          result.append(r.ok ? el('p', { class: 'verified', id: 'bundle-result' }, 'Verified: ' + r.events + ' events and ' + r.envelopes +
            ' signatures against the signed head of ' + r.tree_size + ' events.')
            : el('p', { class: 'unverified', id: 'bundle-result', role: 'alert' }, (r.bad_line ? 'Line ' + r.bad_line + ': ' : '') + r.problem));
        } catch (e) { result.append(el('p', { class: 'error', role: 'alert' }, e.message)); }
      } }, el('h2', {}, 'Check a bundle'), ...field('Bundle (JSON Lines)', file), el('button', { type: 'submit' }, 'Check'), result);
      render(gen, 'Integrity', state, head, form);
    }

    // ---- Figures ----
    function bars(rows, pick, label) {
      const shown = rows.map((r) => ({ g: r.group, c: pick(r) }));
      const max = Math.max(1, ...shown.map((s) => (s.c && !s.c.suppressed ? Number(s.c.value || 0) : 0)));
      const ns = 'http://www.w3.org/2000/svg';
      const h = 24 * shown.length + 8;
      const svg = document.createElementNS(ns, 'svg');
      svg.setAttribute('viewBox', '0 0 520 ' + h);
      svg.setAttribute('role', 'img');
      svg.setAttribute('aria-label', label);
      svg.setAttribute('class', 'chart');
      svg.setAttribute('width', '520');
      svg.setAttribute('height', String(h));
      shown.forEach((s, i) => {
        const v = s.c && !s.c.suppressed ? Number(s.c.value || 0) : 0;
        const t = document.createElementNS(ns, 'text');
        t.setAttribute('x', '0'); t.setAttribute('y', String(24 * i + 20)); t.textContent = s.g;
        const r = document.createElementNS(ns, 'rect');
        r.setAttribute('x', '200'); r.setAttribute('y', String(24 * i + 6));
        r.setAttribute('width', String(Math.round(260 * v / max))); r.setAttribute('height', '16'); r.setAttribute('fill', '#0b5cad');
        const n = document.createElementNS(ns, 'text');
        n.setAttribute('x', String(206 + Math.round(260 * v / max))); n.setAttribute('y', String(24 * i + 20));
        n.textContent = s.c && s.c.suppressed ? '<11' : String(v);
        svg.append(t, r, n);
      });
      return svg;
    }
    function count(c) { return !c ? '0' : c.suppressed ? '<11' : String(c.value || 0); }
    function timing(t) { return !t || t.suppressed ? '<11' : (t.p50_seconds || 0) + ' s / ' + (t.p90_seconds || 0) + ' s'; }
    function rate(r) { return !r || r.suppressed ? '<11' : Math.round(100 * (r.value || 0)) + ' %'; }
    async function showFigures(gen, query) {
      const q = query || { by: 'agency', from: '', to: '' };
      const f = await api('GET', '/api/figures?by=' + encodeURIComponent(q.by) + '&from=' + encodeURIComponent(q.from) + '&to=' + encodeURIComponent(q.to));
      const headers = [q.by === 'service' ? 'Service' : 'Receiving agency', 'Offered', 'Viewed', 'Accepted', 'Declined', 'Completed', 'Closed',
        'Escalated', 'Unassigned', 'First view p50/p90', 'Accept p50/p90', 'Close p50/p90', 'Acceptance', 'Completion', 'Declines by reason'];
      const line = (r) => [r.group, count(r.offered), count(r.viewed), count(r.accepted), count(r.declined), count(r.completed), count(r.closed),
        count(r.escalated), count(r.unassigned), timing(r.to_first_view), timing(r.to_accept), timing(r.to_close), rate(r.acceptance),
        rate(r.completion), (r.declines_by_reason || []).map((d) => d.code + ' ' + count(d.count)).join('; ')];
      const rows = (f.rows || []).map(line);
      const total = f.total ? line(f.total) : null;
      const form = el('form', { class: 'card', 'data-form': 'figures', onsubmit: (ev) => {
        ev.preventDefault();
        const d = new FormData(form);
        showFigures(ui.gen(), { by: d.get('by'), from: d.get('from'), to: d.get('to') });
      } }, el('div', { class: 'grid' },
        el('div', {}, ...field('By', select('by', [['agency', 'Receiving agency'], ['service', 'Service']], q.by))),
        el('div', {}, ...field('Submitted from', el('input', { type: 'date', name: 'from', value: q.from }))),
        el('div', {}, ...field('Until', el('input', { type: 'date', name: 'to', value: q.to })))),
      el('button', { type: 'submit' }, 'Show'));
      render(gen, 'Referral figures', form,
        el('p', { class: 'notice' }, (f.scope === 'network' ? 'The whole network' : 'Referrals your agency sent or received') +
          '. Counts from 1 to 10 are shown as <11 so that no figure points at a person.'),
        bars(f.rows || [], (r) => r.offered, 'Referrals offered by ' + (q.by === 'service' ? 'service' : 'receiving agency')),
        el('div', { class: 'wide', tabindex: '0', role: 'region', 'aria-label': 'Figures table' }, table(headers, [...rows, ...(total ? [total] : [])].map((c, i) => el('tr', { 'data-group': i < rows.length ? c[0] : 'total' },
          c.map((x) => el('td', {}, x)))), { id: 'figures' })),
        csvButton('referral-figures.csv', headers, total ? [...rows, total] : rows));
    }

    return { showPerson, showBreakGlass, showIntegrity, showFigures };
  };
})(window);
