// nextgen-api: the seed's API. GET /api/courses → auth-service, then getCourses → course-service.
// Also: the N+1 path, the error path and a parallel fan-out, all through auto-instrumented fetch.
const http = require('node:http');
const { trace } = require('@opentelemetry/api');
const { logs, SeverityNumber } = require('@opentelemetry/api-logs');

const tracer = trace.getTracer('nextgen-api');
// The OTel logs API: a no-op until tracing.js registers the SDK's logger provider.
const logger = logs.getLogger('nextgen-api');
const SEVERITY = { info: SeverityNumber.INFO, warn: SeverityNumber.WARN, error: SeverityNumber.ERROR };
const AUTH = process.env.AUTH_URL || 'http://auth-service:8001';
const COURSES = process.env.COURSES_URL || 'http://course-service:8002';

function log(level, msg, fields = {}) {
  const ctx = trace.getActiveSpan()?.spanContext();
  const ids = ctx ? { trace_id: ctx.traceId, span_id: ctx.spanId } : {};
  const line = JSON.stringify({ level, msg, service: 'nextgen-api', ...fields, ...ids });
  console.log(line);
  // The record takes the active span's context: OTLP carries its trace and span IDs.
  logger.emit({ severityNumber: SEVERITY[level], severityText: level.toUpperCase(), body: line });
}

async function call(url, init) {
  const response = await fetch(url, init);
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return response.json();
}

// The seed's custom span, as written there.
async function getCourses(query = '') {
  return tracer.startActiveSpan('getCourses', async (span) => {
    try {
      span.setAttribute('query.type', 'courses');
      const courses = await call(`${COURSES}/courses${query}`);
      span.setAttribute('result.count', courses.length);
      return courses;
    } catch (error) {
      span.recordException(error);
      span.setStatus({ code: 2, message: error.message });
      throw error;
    } finally {
      span.end();
    }
  });
}

const routes = {
  'GET /api/courses': async (url) => {
    await call(`${AUTH}/validate`);
    const courses = await getCourses(url.searchParams.get('fail') ? '?fail=1' : '');
    log('info', 'courses listed', { count: courses.length });
    return courses;
  },
  'GET /api/courses/7/lessons': async () => call(`${COURSES}/courses/7/lessons`),
  // A pool of 3 connections, a retry after a timeout and a lock wait, all inside course-service.
  'GET /api/courses/7/schedule': async () => call(`${COURSES}/courses/7/schedule`),
  'POST /api/enroll': async () => call(`${COURSES}/enroll`, { method: 'POST' }),
  'GET /api/dashboard': async () => {
    const [profile, courses, recommended] = await Promise.all([
      call(`${AUTH}/profile`), call(`${COURSES}/courses`), call(`${COURSES}/recommendations`),
    ]);
    return { profile, courses, recommended };
  },
};

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  const handler = routes[`${req.method} ${url.pathname}`];
  if (!handler) {
    res.writeHead(404).end();
    return;
  }
  try {
    const body = await handler(url);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  } catch (error) {
    log('error', 'request failed', { error: error.message, path: url.pathname });
    res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: error.message }));
  }
});

// HOST unset (compose): every interface, as before; scripts/demo sets 127.0.0.1.
server.listen(Number(process.env.PORT || 3001), process.env.HOST, () => log('info', 'nextgen-api listening'));
