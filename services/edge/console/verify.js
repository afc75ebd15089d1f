// careloop console: checks a referral in the browser, with nothing but the
// sender's public key from the directory (DESIGN.md, "The agency edge"):
// the Ed25519 signature over the envelope's signing input, and every
// section received against the salted digest in the signed manifest. The
// edge that serves this page holds the agencies' keys, so "verified" must
// never rest on its word. Formats: services/trust/envelope.h (signing
// input), services/referral/sections.h (section digests).
(function (global) {
  'use strict';
  const te = new TextEncoder();

  function fromBase64(s) {
    const bin = atob(s || '');
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // A protobuf message's fields: number -> list of values (Uint8Array for
  // length-delimited, BigInt for varints). Throws on malformed input.
  function parseMessage(bytes) {
    const fields = new Map();
    let i = 0;
    function varint() {
      let v = 0n, shift = 0n;
      for (;;) {
        if (i >= bytes.length || shift > 63n) throw new Error('bad varint');
        const b = bytes[i++];
        v |= BigInt(b & 0x7f) << shift;
        if ((b & 0x80) === 0) return v;
        shift += 7n;
      }
    }
    while (i < bytes.length) {
      const key = varint();
      const num = Number(key >> 3n), wire = Number(key & 7n);
      let value;
      if (wire === 0) value = varint();
      else if (wire === 2) {
        const len = Number(varint());
        if (i + len > bytes.length) throw new Error('truncated field');
        value = bytes.subarray(i, i + len);
        i += len;
      } else if (wire === 1) { value = bytes.subarray(i, i + 8); i += 8; }
      else if (wire === 5) { value = bytes.subarray(i, i + 4); i += 4; }
      else throw new Error('unsupported wire type');
      if (i > bytes.length) throw new Error('truncated field');
      if (!fields.has(num)) fields.set(num, []);
      fields.get(num).push(value);
    }
    return fields;
  }
  const td = new TextDecoder('utf-8', { fatal: true });
  function bytesOf(f, n) { const v = f.get(n); return v ? v[v.length - 1] : new Uint8Array(0); }
  function strOf(f, n) { return td.decode(bytesOf(f, n)); }
  function intOf(f, n) { const v = f.get(n); return v ? v[v.length - 1] : 0n; }

  function concat(parts) {
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }
  // Each value with its 4-byte big-endian length, as the hub frames them.
  function lengthPrefixed(values) {
    const parts = [];
    for (const v of values) {
      const b = typeof v === 'string' ? te.encode(v) : v;
      const len = new Uint8Array(4);
      new DataView(len.buffer).setUint32(0, b.length, false);
      parts.push(len, b);
    }
    return concat(parts);
  }
  function bigEndian64(v) {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, v), false);
    return out;
  }
  function equal(a, b) {
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
    return d === 0;
  }

  function parseEnvelope(bytes) {
    const f = parseMessage(bytes);
    const actor = parseMessage(bytesOf(f, 4));
    return {
      payload: bytesOf(f, 1), payloadType: strOf(f, 2), sender: strOf(f, 3),
      userId: strOf(actor, 1), displayName: strOf(actor, 2), role: strOf(actor, 3),
      keyId: strOf(f, 5), created: intOf(f, 6), messageId: strOf(f, 7), signature: bytesOf(f, 8),
    };
  }
  function signingInput(e) {
    return lengthPrefixed(['careloop.v1.envelope', e.payloadType, e.sender, e.userId,
      e.displayName, e.role, e.keyId, bigEndian64(e.created), e.messageId, e.payload]);
  }
  function parseManifest(bytes) {
    const f = parseMessage(bytes);
    return { referralId: strOf(f, 1), sections: parseDigests(f.get(9)) };
  }

  // The key that signed, if it was valid when the envelope was made.
  function keyFor(keys, keyId, createdNanos) {
    for (const k of keys || []) {
      if (k.key_id !== keyId) continue;
      const nb = BigInt(k.not_before_unix_nanos || 0), na = BigInt(k.not_after_unix_nanos || 0);
      const rv = BigInt(k.revoked_unix_nanos || 0);
      if (nb !== 0n && createdNanos < nb) return null;
      if (na !== 0n && createdNanos >= na) return null;
      if (rv !== 0n && createdNanos >= rv) return null;
      return fromBase64(k.public_key);
    }
    return null;
  }

  function parseDigests(list) {
    return (list || []).map((b) => {
      const d = parseMessage(b);
      return { id: strOf(d, 1), category: strOf(d, 2), mediaType: strOf(d, 3),
        size: intOf(d, 4), sha256: bytesOf(d, 5) };
    });
  }

  // The envelope's Ed25519 signature with the signer's key as the directory
  // has it; a problem is pushed for anything that does not hold.
  async function checkSignature(subtle, env, keys, problems) {
    const pub = keyFor(keys, env.keyId, env.created);
    if (!pub) {
      problems.push("The signer's key was not valid when this was signed.");
      return;
    }
    try {
      const key = await subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
      const good = await subtle.verify({ name: 'Ed25519' }, key, env.signature, signingInput(env));
      if (!good) problems.push('The signature does not match what was signed.');
    } catch (e) {
      problems.push('The signature could not be checked.');
    }
  }

  // Each section received against its salted digest in the signed message;
  // each withheld one must be one of them. Returns how many were checked.
  async function checkSections(subtle, digests, sections, withheld, problems) {
    const byId = new Map(digests.map((d) => [d.id, d]));
    let checked = 0;
    for (const s of sections || []) {
      const d = byId.get(s.section_id);
      const content = fromBase64(s.content);
      if (!d) { problems.push('A section is not part of what was signed.'); continue; }
      const input = lengthPrefixed(['careloop.v1.section', fromBase64(s.salt), s.section_id,
        s.category, s.media_type, content]);
      const digest = new Uint8Array(await subtle.digest('SHA-256', input));
      if (d.category !== s.category || d.mediaType !== s.media_type ||
          d.size !== BigInt(content.length) || !equal(digest, d.sha256)) {
        problems.push('Section "' + s.section_id + '" was changed after it was signed.');
      } else {
        checked++;
      }
    }
    for (const w of withheld || []) {
      if (!byId.has(w.section_id)) problems.push('A withheld section is not part of what was signed.');
    }
    return checked;
  }

  // referral: the hub's ReferralView (proto JSON); keys: the sender's
  // AgencyKey list. Resolves to { ok, problems: [plain sentences], sections }.
  async function verifyReferral(referral, keys) {
    const problems = [];
    const subtle = global.crypto && global.crypto.subtle;
    if (!subtle) return { ok: false, problems: ['This browser cannot check signatures.'] };
    let env, manifest;
    try {
      env = parseEnvelope(fromBase64(referral.manifest_envelope));
      manifest = parseManifest(env.payload);
    } catch (e) {
      return { ok: false, problems: ['The signed referral could not be read.'] };
    }
    const [sender, id] = (referral.referral || '').split('/');
    if (env.payloadType !== 'careloop.v1.ReferralManifest') problems.push('The signed message is not a referral.');
    if (env.sender !== sender || env.sender !== referral.sender_agency) problems.push('The signature is from another agency than the sender shown.');
    if (manifest.referralId !== id) problems.push('The signed referral has another id than the one shown.');
    await checkSignature(subtle, env, keys, problems);
    const checked = await checkSections(subtle, manifest.sections, referral.sections, referral.withheld, problems);
    return { ok: problems.length === 0, problems, sections: checked,
      signer: { user: env.userId, name: env.displayName, role: env.role, agency: env.sender } };
  }

  // One message of the referral's thread (a ThreadEntry), with the keys of
  // the agency that wrote it.
  async function verifyMessage(entry, referral, keys) {
    const problems = [];
    const subtle = global.crypto && global.crypto.subtle;
    if (!subtle) return { ok: false, problems: ['This browser cannot check signatures.'] };
    let env, fields;
    try {
      env = parseEnvelope(fromBase64(entry.message_envelope));
      fields = parseMessage(env.payload);
    } catch (e) {
      return { ok: false, problems: ['The signed message could not be read.'] };
    }
    const [sender, id] = (referral.referral || '').split('/');
    if (env.payloadType !== 'careloop.v1.ReferralMessage') problems.push('It is not a message.');
    if (env.sender !== entry.by_agency) problems.push('It is signed by another agency than the one shown.');
    if (strOf(fields, 1) !== sender || strOf(fields, 2) !== id) problems.push('It was written in another referral.');
    await checkSignature(subtle, env, keys, problems);
    await checkSections(subtle, parseDigests(fields.get(3)), entry.sections, entry.withheld, problems);
    return { ok: problems.length === 0, problems,
      signer: { user: env.userId, name: env.displayName, role: env.role, agency: env.sender } };
  }

  global.CareloopVerify = { verifyReferral, verifyMessage, parseEnvelope, parseManifest, signingInput, lengthPrefixed };
})(typeof window !== 'undefined' ? window : globalThis);
