// Grafana's own LogQL parser (@grafana/lezer-logql, the grammar Grafana's Loki editor uses)
// on every LogQL the correlator sends and every LogQL we provision, after the substitutions
// Grafana applies (grafana-variables.cjs), with realistic values and with empty ones. The
// parser checks syntax; Loki's own rule on selectors ("at least one matcher that does not
// match the empty string", pkg/logql/syntax validate in Loki 3) is checked beside it.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { parser } = require('@grafana/lezer-logql');
const { EMPTY, REALISTIC, REPO, SUBSTITUTIONS, provisionedDatasources, substitute } = require('./grafana-variables.cjs');

function parse(query) {
  const tree = parser.parse(query);
  const errors = [];
  const matchers = [];
  let inSelector = 0;
  tree.iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
      if (node.name === 'Selector') inSelector += 1;
      if (node.name === 'Matcher' && inSelector) {
        const ident = node.node.getChild('Identifier');
        const str = node.node.getChild('String');
        const op = query.slice(ident.to, str.from).trim();
        matchers.push({ label: query.slice(ident.from, ident.to), op, value: JSON.parse(query.slice(str.from, str.to).replace(/^`|`$/g, '"')) });
      }
    },
    leave(node) { if (node.name === 'Selector') inSelector -= 1; },
  });
  return { errors, matchers };
}

// Prometheus/Loki matcher semantics: an absent label has the value "", regexes are anchored.
function matches({ op, value }, actual) {
  const re = () => new RegExp(`^(?:${value})$`, 'u');
  return { '=': actual === value, '!=': actual !== value, '=~': re().test(actual), '!~': !re().test(actual) }[op];
}
const lokiAccepts = (matchers) => matchers.some((m) => !matches(m, ''));
const selects = (matchers, stream) => matchers.every((m) => matches(m, stream[m.label] ?? ''));

const STREAM = { service_name: 'nextgen-api' }; // a real stream of the demo (OTLP: service.name → service_name)

function assertValid(query, what) {
  const { errors, matchers } = parse(query);
  assert.deepEqual(errors, [], `${what}: Grafana's LogQL parser finds errors in ${query}`);
  assert.ok(matchers.length > 0, `${what}: no stream selector in ${query}`);
  assert.ok(lokiAccepts(matchers), `${what}: Loki refuses ${query} (every matcher matches "")`);
  return matchers;
}

test('every LogQL the correlator sends parses, with a selector Loki accepts', () => {
  const cases = JSON.parse(execFileSync(process.env.PYTHON || 'python3', ['-m', 'tests.node.correlator_logql'], { cwd: REPO, encoding: 'utf8' }));
  assert.ok(cases.length >= 12);
  for (const { case: what, query } of cases) assertValid(query, what);
});

test('the substitution table names its source for every macro we use', () => {
  const provisioned = fs.readFileSync(path.join(REPO, 'provisioning/datasources/datasources.yaml'), 'utf8')
    + fs.readdirSync(path.join(REPO, 'grafana/dashboards')).map((f) => fs.readFileSync(path.join(REPO, 'grafana/dashboards', f), 'utf8')).join('');
  const used = new Set(provisioned.replace(/\$\$/g, '$').match(/\$\{[^}]+\}|\$[A-Za-z_][A-Za-z0-9_]*/g));
  const known = new Set(SUBSTITUTIONS.map((r) => r.macro));
  const dashboardOnly = ['$service', '${trace_id}', '$trace_id', '$__all']; // dashboard variables, below
  for (const macro of used) {
    if (dashboardOnly.includes(macro)) continue;
    assert.ok(known.has(macro), `${macro} has no row in the substitution table`);
  }
  for (const row of SUBSTITUTIONS) assert.match(row.source, /\(.*1[0-9]\.\d+\.\d+\)|@grafana\/data 12\.4\.0/, row.macro);
});

const traceToLogs = () => provisionedDatasources().find((d) => d.type === 'jaeger').jsonData.tracesToLogsV2;

test('trace → logs, for a real Jaeger span: valid, bounded to the trace, and it reaches the span\'s stream', () => {
  const query = substitute(traceToLogs().query, { ...REALISTIC, tags: traceToLogs().tags ?? [] });
  const matchers = assertValid(query, 'trace → logs');
  assert.ok(selects(matchers, STREAM), `${query} does not select ${JSON.stringify(STREAM)}`);
  assert.ok(query.includes(REALISTIC.trace.traceID));
  assert.ok(!query.includes('${') && !query.includes('$__'), `unexpanded macro in ${query}`);
});

test('trace → logs with empty span values still parses and stays valid (no `{}`)', () => {
  assertValid(substitute(traceToLogs().query, { ...EMPTY, tags: traceToLogs().tags ?? [] }), 'trace → logs, empty');
});

test('the old trace → logs query, `{${__tags}}` with service.name → service_name, is what Loki refused', () => {
  // Kept as a guard on the substitution table: for a Jaeger span, __tags is empty.
  const old = '{${__tags}} | label_format hit=`{{ contains "${__trace.traceId}" __line__ }}` | hit="true" or trace_id="${__trace.traceId}"';
  const query = substitute(old, { ...REALISTIC, tags: [{ key: 'service.name', value: 'service_name' }] });
  assert.ok(query.startsWith('{} |'));
  const { errors } = parse(query);
  assert.ok(errors.length > 0, 'Grafana\'s parser refuses `{}` too');
});

function dashboardQueries() {
  const out = [];
  for (const file of fs.readdirSync(path.join(REPO, 'grafana/dashboards'))) {
    const board = JSON.parse(fs.readFileSync(path.join(REPO, 'grafana/dashboards', file), 'utf8'));
    const panels = board.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    for (const panel of panels) {
      for (const target of panel.targets ?? []) {
        if (target.datasource?.type === 'loki') out.push({ what: `${file} / ${panel.title}`, expr: target.expr, panel });
      }
    }
  }
  return out;
}

// Dashboard variables as Grafana interpolates them into Loki: the textbox raw (lokiRegularEscape),
// `$service` with All = the allValue `.+` (or the chosen values joined with |).
function dashboardSubstitute(expr, { traceId, service }) {
  return substitute(expr.replace(/\$service/g, service), { ...REALISTIC, vars: { trace_id: traceId } });
}

test('dashboard Loki queries parse and are valid with a trace ID, with All services, and with one service', () => {
  const queries = dashboardQueries();
  assert.ok(queries.length >= 2);
  for (const { what, expr } of queries) {
    for (const service of ['.+', 'nextgen-api', 'nextgen-api|auth-service']) {
      const query = dashboardSubstitute(expr, { traceId: REALISTIC.span.traceID, service });
      assert.ok(selects(assertValid(query, what), STREAM), `${what}: ${query} misses the stream`);
    }
  }
});

test('with an empty Trace ID box, a trace panel selects no stream at all (Loki reads no chunk) and says "pick a trace"', () => {
  const traced = dashboardQueries().filter(({ expr }) => expr.includes('trace_id'));
  assert.ok(traced.length >= 1);
  for (const { what, expr, panel } of traced) {
    const query = dashboardSubstitute(expr, { traceId: '', service: '.+' });
    const matchers = assertValid(query, `${what} (empty ID)`);
    assert.ok(!selects(matchers, STREAM), `${what}: with no trace ID, ${query} still scans ${JSON.stringify(STREAM)}`);
    assert.match(panel.fieldConfig.defaults.noValue, /[Pp]ick a trace/);
  }
});
