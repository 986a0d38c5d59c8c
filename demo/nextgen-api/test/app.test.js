// node --test: the service runs with the seed's tracing.js; its spans are exported over
// OTLP/HTTP to a collector endpoint inside this test, and we read them back.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { spawn } = require('node:child_process');
const path = require('node:path');

const received = [];
const receivedLogs = [];
const contentTypes = new Set();
let collector, auth, courses, app, appPort;

function listen(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

function spans() {
  return received.flatMap((body) => body.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({
    ...s,
    service: rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue,
    attrs: Object.fromEntries((s.attributes || []).map((a) => [a.key, Object.values(a.value)[0]])),
  })))));
}

function logRecords() {
  return receivedLogs.flatMap((body) => body.resourceLogs.flatMap((rl) => rl.scopeLogs.flatMap((sl) => sl.logRecords.map((r) => ({
    ...r,
    service: rl.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue,
  })))));
}

async function waitForLog(predicate, what) {
  for (let i = 0; i < 100; i++) {
    const found = logRecords().filter(predicate);
    if (found.length) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`no log record: ${what}`);
}

async function waitFor(predicate, what) {
  for (let i = 0; i < 100; i++) {
    const found = spans().filter(predicate);
    if (found.length) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`no span: ${what}`);
}

before(async () => {
  collector = await listen(async (req, res) => {
    const body = await readBody(req);
    if (req.url === '/v1/traces') {
      // exporter-trace-otlp-http sends OTLP/JSON (the -proto package would send protobuf)
      contentTypes.add(req.headers['content-type']);
      received.push(JSON.parse(body.toString()));
    } else if (req.url === '/v1/logs') {
      receivedLogs.push(JSON.parse(body.toString()));
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  // the stubs answer after 20 ms, like real services, so parallel calls overlap for sure
  auth = await listen((req, res) => setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"user":42}'), 20));
  courses = await listen((req, res) => {
    if (req.url.includes('fail=1')) return res.writeHead(500).end('{"error":"db down"}');
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('[{"id":1},{"id":2},{"id":3}]'), 20);
  });
  appPort = 40000 + Math.floor(Math.random() * 20000);
  app = spawn(process.execPath, ['--require', './tracing.js', 'app.js'], {
    cwd: path.join(__dirname, '..'),
    env: {
      ...process.env,
      PORT: String(appPort),
      AUTH_URL: `http://127.0.0.1:${auth.address().port}`,
      COURSES_URL: `http://127.0.0.1:${courses.address().port}`,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${collector.address().port}/v1/traces`,
      OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: `http://127.0.0.1:${collector.address().port}/v1/logs`,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_BLRP_SCHEDULE_DELAY: '100',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${appPort}/healthz`)).ok) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail('nextgen-api did not start');
});

after(() => {
  app?.kill('SIGTERM');
  for (const s of [collector, auth, courses]) s?.close();
});

test('getCourses span carries the seed attributes and is exported over OTLP/HTTP', async () => {
  const response = await fetch(`http://127.0.0.1:${appPort}/api/courses`);
  assert.equal(response.status, 200);
  const [span] = await waitFor((s) => s.name === 'getCourses' && s.attrs['result.count'] !== undefined, 'getCourses');
  assert.equal(span.service, 'nextgen-api');
  assert.equal(span.attrs['query.type'], 'courses');
  assert.equal(Number(span.attrs['result.count']), 3);
  // auto-instrumentation made the incoming server span and the outgoing fetch spans of the same trace
  const sameTrace = spans().filter((s) => s.traceId === span.traceId);
  assert.ok(sameTrace.some((s) => s.kind === 2), 'a server span');
  assert.ok(sameTrace.filter((s) => s.kind === 3).length >= 2, 'client spans to auth and courses');
  assert.deepEqual([...contentTypes], ['application/json']);
  // getCourses is a child of the incoming request's span (startActiveSpan made it active)
  const server = sameTrace.find((s) => s.kind === 2);
  assert.equal(span.parentSpanId, server.spanId);
});

test('the dashboard fans out to three services in parallel', async () => {
  const response = await fetch(`http://127.0.0.1:${appPort}/api/dashboard`);
  assert.equal(response.status, 200);
  const [root] = await waitFor((s) => s.kind === 2 && String(s.attrs['http.target'] ?? s.attrs['url.path'] ?? s.name).includes('dashboard')
    && spans().filter((c) => c.traceId === s.traceId && c.kind === 3).length >= 3, 'dashboard trace with 3 client spans');
  const calls = spans().filter((s) => s.traceId === root.traceId && s.kind === 3)
    .map((s) => [BigInt(s.startTimeUnixNano), BigInt(s.endTimeUnixNano)]);
  assert.equal(calls.length, 3);
  const latestStart = calls.reduce((m, [start]) => (start > m ? start : m), 0n);
  const earliestEnd = calls.reduce((m, [, end]) => (end < m ? end : m), calls[0][1]);
  assert.ok(latestStart < earliestEnd, 'all three calls were in flight at once');
});

test('a failing course-service records the exception and an error status on getCourses', async () => {
  const response = await fetch(`http://127.0.0.1:${appPort}/api/courses?fail=1`);
  assert.equal(response.status, 502);
  const [span] = await waitFor((s) => s.name === 'getCourses' && s.status?.code === 2, 'failed getCourses');
  assert.match(span.status.message, /answered 500/);
  assert.ok(span.events.some((e) => e.name === 'exception'));
});

test('log lines reach the OTLP logs endpoint with the trace and span IDs of the request', async () => {
  const response = await fetch(`http://127.0.0.1:${appPort}/api/courses`);
  assert.equal(response.status, 200);
  const [record] = await waitForLog((r) => r.body?.stringValue?.includes('courses listed')
    && spans().some((s) => s.kind === 2 && s.spanId === r.spanId), 'courses listed, with its server span exported');
  assert.equal(record.service, 'nextgen-api'); // Loki's service_name label
  assert.equal(record.severityText, 'INFO');
  const server = spans().find((s) => s.spanId === record.spanId);
  assert.equal(record.traceId, server.traceId); // Loki's trace_id structured metadata
  assert.match(record.traceId, /^[0-9a-f]{32}$/);
  // the body is the stdout line, IDs included, so line filters and derived fields find it too
  const line = JSON.parse(record.body.stringValue);
  assert.deepEqual([line.trace_id, line.span_id, line.count], [record.traceId, record.spanId, 3]);
});

test('an error is logged over OTLP under the failing request', async () => {
  await fetch(`http://127.0.0.1:${appPort}/api/courses?fail=1`);
  const [record] = await waitForLog((r) => r.severityText === 'ERROR' && r.body?.stringValue?.includes('answered 500'), 'request failed');
  assert.ok(spans().some((s) => s.traceId === record.traceId && s.name === 'getCourses' && s.status?.code === 2),
    'the log shares its trace with the failed getCourses span');
});
