// A real careloopd for the browser tests: its own data dir, free ports,
// seeded with the demo network through the real CLI.
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

// One careloopd: its stdout lines until it serves, and its log.
async function startCareloopd(binary, args) {
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = { child, logs: '', consoleUrl: null, address: null };
  child.stderr.on('data', (d) => { proc.logs += d; });
  const lines = createInterface({ input: child.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('careloopd did not start in 60 s')), 60000);
    child.on('exit', (code) => reject(new Error('careloopd exited with ' + code + ': ' + proc.logs)));
    lines.on('line', (line) => {
      const m = line.match(/console on (http:\/\/\S+)/);
      if (m) proc.consoleUrl = m[1].replace(/\/$/, '');
      const served = line.match(/careloopd: serving on (\S+)/);
      if (served) { proc.address = served[1]; clearTimeout(timer); resolve(); }
    });
  });
  return proc;
}

// The hub with its console in process; or, with CARELOOP_REMOTE_EDGE=1, a
// hub without one and an edge run apart that calls it over gRPC (the demo
// seed signs as the hub admin, so the edge's data dir gets the dev hub's
// admin key).
export async function startHub() {
  const careloopd = process.env.CARELOOPD_BINARY;
  const cli = process.env.CARELOOP_CLI_BINARY;
  if (!careloopd || !cli) throw new Error('set CARELOOPD_BINARY and CARELOOP_CLI_BINARY');
  const remote = process.env.CARELOOP_REMOTE_EDGE === '1';
  const dir = mkdtempSync(join(tmpdir(), 'careloop-browser-'));
  const common = (dataDir) => ['--data-dir', dataDir,
    // Every test signs in from 127.0.0.1: room for them all.
    '--edge-logins-per-minute', '1000', '--edge-requests-per-minute', '100000', '--log-level', process.env.CARELOOP_LOG_LEVEL || 'warn'];
  const procs = [];
  let edgeDir = dir;
  try {
    const hub = await startCareloopd(careloopd, ['--listen', '127.0.0.1:0', '--edge-listen', remote ? 'off' : '127.0.0.1:0', ...common(dir)]);
    procs.push(hub);
    if (remote) {
      edgeDir = join(dir, 'edge-apart');
      mkdirSync(join(edgeDir, 'keys'), { recursive: true });
      copyFileSync(join(dir, 'keys', 'hub-admin.pem'), join(edgeDir, 'keys', 'hub-admin.pem'));
      // The hub's verifier key, for the edge's integrity monitor (handed over out of band).
      copyFileSync(join(dir, 'keys', 'hub-log.vkey'), join(edgeDir, 'hub-log.vkey'));
      procs.push(await startCareloopd(careloopd, ['--edge-hub', hub.address, '--edge-listen', '127.0.0.1:0', ...common(edgeDir)]));
    }
  } catch (e) {
    for (const p of procs) p.child.kill('SIGKILL');
    throw e;
  }
  const consoleUrl = procs[procs.length - 1].consoleUrl;
  if (!consoleUrl) throw new Error('careloopd printed no console address');
  const seed = spawnSync(cli, ['--json', 'demo', 'seed', '--console', consoleUrl, '--data-dir', edgeDir],
    { encoding: 'utf8' });
  if (seed.status !== 0) throw new Error('demo seed failed: ' + seed.stderr + seed.stdout);
  const seeded = JSON.parse(seed.stdout);
  // The first login of an agency, or its member `user`.
  const login = (agency, user) => seeded.logins.find((l) => l.agency === agency && (!user || l.user === user));
  return {
    url: consoleUrl, dir, edgeDir, seeded, login, remote, hubAddress: procs[0].address,
    logs: () => procs.map((p) => p.logs).join(''),
    async stop() {
      for (const p of procs.reverse()) {
        p.child.kill('SIGTERM');
        await new Promise((r) => p.child.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The code an authenticator app shows for a base32 secret at `time` (RFC
// 6238: HMAC-SHA1, 30-second steps, 6 digits), as a staff member would type it.
export function totp(base32, time = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of base32.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(time / 1000 / 30)));
  const mac = createHmac('sha1', Buffer.from(bytes)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1000000;
  return String(value).padStart(6, '0');
}
