// Restarting the broker, for the tests in restart/ (run.sh runs them in their
// own serial phase after the normal suites: a restart breaks every open
// connection, so nothing else may run at the same time).
//
// BROKER_RESTART_CMD is a shell command that restarts the broker at AMQP_URL
// and returns once it accepts connections again. Without it the tests skip.

const { spawn } = require('node:child_process');
const amqp = require('amqplib');
const { AMQP_URL, sleep, watch } = require('./helpers');

const RESTART_CMD = (process.env.BROKER_RESTART_CMD || '').trim();
// Limit for the restart command itself, then how long to keep retrying to connect.
const RESTART_CMD_TIMEOUT_MS = 180000;
const RECONNECT_MS = 30000;
// Per-test limit for tests that restart the broker once.
const RESTART_TEST_TIMEOUT_MS = 300000;

const skipUnlessRestartable = RESTART_CMD
  ? false
  : 'BROKER_RESTART_CMD is not set (a command that restarts the broker; see interop-tests/README.md)';

// Run the command and wait for the process to exit. Waiting for 'exit', not
// 'close': a broker it started in the background may keep the pipes open.
function runRestartCmd() {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', RESTART_CMD], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (d) => {
      output += d;
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), RESTART_CMD_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      if (code === 0) resolve(output);
      else reject(new Error(`BROKER_RESTART_CMD failed (exit ${code ?? signal}): ${RESTART_CMD}\n${output}`));
    });
  });
}

async function waitForBroker() {
  const deadline = Date.now() + RECONNECT_MS;
  for (;;) {
    try {
      const conn = watch(await amqp.connect(AMQP_URL, { timeout: 5000 }));
      await conn.close();
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`broker not accepting connections ${RECONNECT_MS / 1000} s after the restart: ${err.message}`);
      }
      await sleep(500);
    }
  }
}

// Restart the broker and wait until it accepts AMQP connections again.
// Connections opened before are dead afterwards.
async function restartBroker(t) {
  const started = Date.now();
  await runRestartCmd();
  await waitForBroker();
  t?.diagnostic(`broker restarted in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

module.exports = { RESTART_CMD, RESTART_TEST_TIMEOUT_MS, restartBroker, skipUnlessRestartable };
