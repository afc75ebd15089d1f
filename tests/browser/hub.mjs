// A real careloopd for the browser tests: its own data dir, free ports,
// seeded with the demo network through the real CLI.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export async function startHub() {
  const careloopd = process.env.CARELOOPD_BINARY;
  const cli = process.env.CARELOOP_CLI_BINARY;
  if (!careloopd || !cli) throw new Error('set CARELOOPD_BINARY and CARELOOP_CLI_BINARY');
  const dir = mkdtempSync(join(tmpdir(), 'careloop-browser-'));
  const child = spawn(careloopd, ['--listen', '127.0.0.1:0', '--edge-listen', '127.0.0.1:0',
    '--data-dir', dir,
    // Every test signs in from 127.0.0.1: room for them all.
    '--edge-logins-per-minute', '1000', '--edge-requests-per-minute', '100000', '--log-level', process.env.CARELOOP_LOG_LEVEL || 'warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  child.stderr.on('data', (d) => { logs += d; });
  const lines = createInterface({ input: child.stdout });
  let consoleUrl = null;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('careloopd did not start in 60 s')), 60000);
    child.on('exit', (code) => reject(new Error('careloopd exited with ' + code)));
    lines.on('line', (line) => {
      const m = line.match(/console on (http:\/\/\S+)/);
      if (m) consoleUrl = m[1].replace(/\/$/, '');
      if (line.includes('careloopd: serving on')) { clearTimeout(timer); resolve(); }
    });
  });
  if (!consoleUrl) throw new Error('careloopd printed no console address');
  const seed = spawnSync(cli, ['--json', 'demo', 'seed', '--console', consoleUrl, '--data-dir', dir],
    { encoding: 'utf8' });
  if (seed.status !== 0) throw new Error('demo seed failed: ' + seed.stderr + seed.stdout);
  const seeded = JSON.parse(seed.stdout);
  const login = (agency) => seeded.logins.find((l) => l.agency === agency);
  return {
    url: consoleUrl, dir, seeded, login,
    logs: () => logs,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
