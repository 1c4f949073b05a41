// Which broker is under test, and gates for tests of features Warren does not have yet.
//
//   test('...', pending('ttl'), withEnv(...))
//       runs against RabbitMQ; skipped on Warren as "not yet implemented in Warren: ttl".
//       When Warren gets the feature, replace `pending('ttl')` with `opts`.
//   test('...', warrenOnly(), withEnv(...))
//       a Warren extension: skipped unless the broker is Warren.
//   test('...', warrenOnly(pending('dedup')), withEnv(...))
//       both; when implemented, `warrenOnly(pending('dedup'))` becomes `warrenOnly()`.
//
// Find every gate with: grep -rn "pending('" interop-tests/node/test
// INTEROP_RUN_PENDING=1 runs the pending tests on Warren anyway (to see what passes).
//
// The product comes from connection.start's server properties ("Warren" or "RabbitMQ").
// node:test needs `skip` when a test is declared, so it is read once per test file, by a
// short child process that opens one connection.

const { execFileSync } = require('node:child_process');
const { AMQP_URL, TEST_TIMEOUT_MS } = require('./helpers');

let product;

// The server's `product` property, '' if the broker cannot be reached (the tests then
// fail on their own connection attempts).
function serverProduct() {
  if (product === undefined) {
    const script = `
      require(${JSON.stringify(require.resolve('amqplib'))})
        .connect(process.env.AMQP_URL, { timeout: 10000 })
        .then(async (c) => {
          process.stdout.write(String(c.connection.serverProperties.product || ''));
          await c.close();
        })
        .catch(() => process.exit(1));`;
    try {
      product = execFileSync(process.execPath, ['-e', script], {
        env: { ...process.env, AMQP_URL },
        encoding: 'utf8',
        timeout: 20000,
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    } catch {
      product = '';
    }
  }
  return product;
}

function isWarren() {
  return serverProduct() === 'Warren';
}

const defaults = () => ({ timeout: TEST_TIMEOUT_MS });

// Test options: skipped on Warren until it implements `feature`.
function pending(feature, base = defaults()) {
  if (base.skip || process.env.INTEROP_RUN_PENDING === '1' || !isWarren()) return base;
  return { ...base, skip: `not yet implemented in Warren: ${feature}` };
}

// Test options: a Warren-only extension, skipped on any other broker.
function warrenOnly(base = defaults()) {
  if (base.skip || isWarren()) return base;
  return { ...base, skip: `Warren-only extension (server is ${serverProduct() || 'unknown'})` };
}

module.exports = { isWarren, pending, serverProduct, warrenOnly };
