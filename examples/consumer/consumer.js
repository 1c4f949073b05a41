// Example worker of the Warren dev stack (amqplib, RabbitMQ's Node client, unchanged).
//
// Retry with dead-lettering: a job that fails is rejected (nack, requeue=false); the queue
// `work` dead-letters it through the `work.retry` exchange to `work.wait`, whose TTL
// (RETRY_DELAY_MS) dead-letters it back to `work`. The broker counts the round trips in the
// `x-death` header, so the worker needs no state of its own: after MAX_ATTEMPTS failed attempts
// it moves the job to `work.parking` (published with a confirm, then the original is acked).
//
// Environment: AMQP_URL (amqp://guest:guest@warren:5672/%2F), MAX_ATTEMPTS (3),
// RETRY_DELAY_MS (1000), EXPECT (exit 0 once this many jobs are settled, done or parked;
// 0 = run until stopped).
'use strict';
const amqp = require('amqplib');

const URL = process.env.AMQP_URL || 'amqp://guest:guest@warren:5672/%2F';
const MAX_ATTEMPTS = Number(process.env.MAX_ATTEMPTS || 3);
const RETRY_DELAY_MS = Number(process.env.RETRY_DELAY_MS || 1000);
const EXPECT = Number(process.env.EXPECT || 0);

async function declare(ch) {
  // The same topology as the producer's (declarations are idempotent).
  await ch.assertExchange('work.retry', 'direct', { durable: true });
  await ch.assertQueue('work', {
    durable: true,
    arguments: { 'x-dead-letter-exchange': 'work.retry', 'x-dead-letter-routing-key': 'wait' },
  });
  await ch.assertQueue('work.wait', {
    durable: true,
    arguments: {
      'x-message-ttl': RETRY_DELAY_MS,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': 'work',
    },
  });
  await ch.bindQueue('work.wait', 'work.retry', 'wait');
  await ch.assertQueue('work.parking', { durable: true });
}

async function connect() {
  for (let attempt = 0; attempt < 30; attempt++) {
    try {
      return await amqp.connect(URL);
    } catch (e) {
      console.log(`consumer: broker not reachable yet (${e.message}), retrying`);
      await new Promise((r) => setTimeout(r, 1000 + attempt * 200));
    }
  }
  throw new Error('consumer: giving up on the broker');
}

// How many times this job has been rejected from `work` already (x-death, as the broker wrote it).
function previousFailures(msg) {
  const deaths = (msg.properties.headers || {})['x-death'] || [];
  const entry = deaths.find((d) => d.queue === 'work' && d.reason === 'rejected');
  return entry ? Number(entry.count) : 0;
}

async function main() {
  const conn = await connect();
  const ch = await conn.createConfirmChannel();
  await declare(ch);
  await ch.prefetch(10);
  const stats = { done: 0, retried: 0, parked: 0 };
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const settled = () => {
    if (EXPECT > 0 && stats.done + stats.parked >= EXPECT) finish();
  };

  await ch.consume('work', async (msg) => {
    if (msg === null) return finish(new Error('consumer cancelled by the broker'));
    const job = JSON.parse(msg.content.toString());
    const attempt = previousFailures(msg) + 1;
    if (attempt > job.fail_times) {
      stats.done++;
      console.log(`consumer: job ${job.id} done on attempt ${attempt}`);
      ch.ack(msg);
    } else if (attempt < MAX_ATTEMPTS) {
      stats.retried++;
      console.log(`consumer: job ${job.id} failed on attempt ${attempt}; retry in ${RETRY_DELAY_MS} ms`);
      ch.nack(msg, false, false); // dead-lettered to work.wait, back in `work` after the TTL
    } else {
      // Park it: publish a copy (with its headers, x-death included) and wait for the confirm
      // before acking the original, so that a crash in between duplicates instead of losing it.
      await new Promise((resolve, reject) =>
        ch.sendToQueue('work.parking', msg.content, { ...msg.properties, persistent: true }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      ch.ack(msg);
      stats.parked++;
      console.log(`consumer: job ${job.id} failed ${attempt} times; parked in work.parking`);
    }
    settled();
  });
  console.log(`consumer: waiting for jobs on "work" (max ${MAX_ATTEMPTS} attempts)`);

  const error = await finished;
  await ch.close();
  await conn.close();
  if (error) throw error;
  console.log(`consumer: done: ${stats.done} done, ${stats.parked} parked, ${stats.retried} retries`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
