// Grafana's own exemplar → data-link code (@grafana/prometheus 12.4.0, result_transformer)
// and link-model code (@grafana/data 12.4.0, getLinksSupplier), fed with a real Prometheus
// exemplar answer and the exemplarTraceIdDestinations `correlator provision` generates.
require('./grafana-env.cjs');

const { test, before } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const data = require('@grafana/data');
const runtime = require('@grafana/runtime');
const { REPO, provisionedDatasources } = require('./grafana-variables.cjs');

// @grafana/prometheus's index also loads its query editor, whose monaco-promql dependency
// imports `./promql/promql.contribution` without a file extension: fine for a bundler,
// ERR_MODULE_NOT_FOUND in plain Node. So the published module that makes exemplar links is
// loaded by its file path, from the same 12.4.0 package (dist/cjs/result_transformer.cjs).
const PROMETHEUS_PKG = path.dirname(require.resolve('@grafana/prometheus/package.json'));
const { transformV2 } = require(path.join(PROMETHEUS_PKG, 'dist/cjs/result_transformer.cjs'));

// What the 12.4 Jaeger datasource answers: pkg/tsdb/jaeger/querydata.go switches on
// queryType: "" (trace ID), "search", "dependencyGraph", "upload"; any other type (traceql)
// falls through and the response is empty ("No data").
const JAEGER_QUERY_TYPES = new Set(['', 'search', 'dependencyGraph', 'upload']);

const recorded = JSON.parse(fs.readFileSync(path.join(REPO, 'tests/fixtures/recorded/prometheus/query_exemplars.histogram.json'), 'utf8'));
const datasources = provisionedDatasources();
const byType = Object.fromEntries(datasources.map((ds) => [ds.type, ds]));

// The frame Grafana's backend makes of a /api/v1/query_exemplars answer
// (pkg/promlib/querydata/exemplar/framer.go, 12.4.0): one long frame named "exemplar" with
// Time, Value, then one string field per series or exemplar label; resultType "exemplar".
function exemplarFrame(body) {
  const rows = body.data.flatMap((series) => series.exemplars.map((ex) => ({
    time: Math.round(ex.timestamp * 1000), value: Number(ex.value), labels: { ...series.seriesLabels, ...ex.labels },
  })));
  const names = [...new Set(rows.flatMap((r) => Object.keys(r.labels)))].sort();
  return data.createDataFrame({
    name: 'exemplar', refId: 'A', meta: { custom: { resultType: 'exemplar' } },
    fields: [
      { name: 'Time', type: data.FieldType.time, values: rows.map((r) => r.time) },
      { name: 'Value', type: data.FieldType.number, values: rows.map((r) => r.value) },
      ...names.map((n) => ({ name: n, type: data.FieldType.string, values: rows.map((r) => r.labels[n] ?? '') })),
    ],
  });
}

// Grafana's templateSrv is app code (not on npm); for data links it resolves these macros from
// the link's scoped vars (public/app/features/templating/template_srv.ts + macroRegistry.ts, 12.4.0),
// then applies the format getLinksSupplier asks for (UriEncode for hrefs).
function replaceVariables(text, scopedVars, format) {
  const ctx = scopedVars?.__dataContext?.value;
  return text.replace(/\$\{(__value\.raw|__data\.fields\[?"?([A-Za-z_]+)"?\]?)\}/g, (_m, macro, fieldName) => {
    const row = ctx?.rowIndex ?? 0;
    const field = macro === '__value.raw' ? ctx.field : ctx.frame.fields.find((f) => f.name === fieldName);
    const value = field ? String(field.values[row] ?? '') : '';
    return format === 'uriencode' ? encodeURIComponent(value) : value;
  });
}

function links(destinations, body = recorded.response.body, label = 'trace_id') {
  const frame = exemplarFrame(body);
  const request = { targets: [{ refId: 'A', expr: recorded.request.params.query, exemplar: true }], app: data.CoreApp.Dashboard };
  const { data: [out] } = transformV2({ data: [frame] }, request, { exemplarTraceIdDestinations: destinations });
  const traceIds = out.fields.find((f) => f.name === label);
  return traceIds.values.map((traceId, rowIndex) => {
    const supplier = data.getLinksSupplier(out, traceIds, {}, replaceVariables);
    return { traceId, links: supplier({ valueRowIndex: rowIndex }) };
  });
}

// The panes an Explore URL opens: `panes` (schemaVersion 1) or the legacy `left` that Grafana
// still writes for internal links (mapInternalLinkToExplore) and migrates on load.
function explorePanes(href) {
  const url = new URL(href, 'http://grafana.invalid');
  assert.equal(url.pathname, '/explore');
  if (url.searchParams.has('panes')) return Object.values(JSON.parse(url.searchParams.get('panes')));
  return [JSON.parse(url.searchParams.get('left'))];
}

before(() => {
  data.locationUtil.initialize({ config: { appSubUrl: '' }, getTimeRangeForUrl: () => ({ from: 'now-1h', to: 'now' }),
    getVariablesUrlParams: () => ({}) });
  runtime.setDataSourceSrv({
    getInstanceSettings: (ref) => {
      const ds = datasources.find((d) => d.uid === (ref?.uid ?? ref) || d.name === ref);
      return ds && { uid: ds.uid, name: ds.name, type: ds.type, meta: { id: ds.type } };
    },
  });
});

test('the recorded exemplars are real: two traces with their span IDs, from a real Prometheus', () => {
  const ids = recorded.response.body.data.flatMap((s) => s.exemplars.map((e) => e.labels.trace_id));
  assert.ok(ids.includes('4bf92f3577b34da6a3ce929d0e0e4736') && ids.includes('7b4c2d9e1f3a5b6c'));
  assert.match(recorded.prometheus_version, /^2\./);
});

test('every exemplar offers "Open trace" and "Correlate", in that order, and nothing else', () => {
  const destinations = byType.prometheus.jsonData.exemplarTraceIdDestinations;
  for (const { links: made } of links(destinations)) {
    assert.deepEqual(made.map((l) => l.title), ['Open trace', 'Correlate: trace + logs + exemplars']);
    assert.ok(made.every((l) => l.target === '_blank'));
  }
});

test('"Open trace" opens Explore on the Jaeger datasource with a trace-ID query Jaeger answers (not traceql)', () => {
  const jaeger = byType.jaeger;
  for (const { traceId, links: made } of links(byType.prometheus.jsonData.exemplarTraceIdDestinations)) {
    const open = made.find((l) => l.title === 'Open trace');
    const panes = explorePanes(open.href);
    assert.equal(panes.length, 1);
    const [pane] = panes;
    assert.equal(pane.datasource, jaeger.uid);
    assert.equal(pane.queries.length, 1);
    const [query] = pane.queries;
    assert.deepEqual(query.datasource, { type: 'jaeger', uid: jaeger.uid });
    assert.equal(query.query, traceId);
    assert.ok(JAEGER_QUERY_TYPES.has(query.queryType ?? ''), `queryType ${query.queryType}`);
    assert.equal(query.queryType ?? '', '', 'the trace-ID query type');
  }
});

test('"Correlate" opens the correlator\'s page on the clicked trace ID', () => {
  const settingsUrl = byType.prometheus.jsonData.exemplarTraceIdDestinations.find((d) => d.urlDisplayLabel.startsWith('Correlate')).url;
  const base = settingsUrl.slice(0, settingsUrl.indexOf('/correlate/'));
  for (const { traceId, links: made } of links(byType.prometheus.jsonData.exemplarTraceIdDestinations)) {
    assert.equal(made.find((l) => l.title.startsWith('Correlate')).href, `${base}/correlate/${traceId}`);
  }
});

test('why not a datasourceUid destination: Grafana 12.4 sends queryType traceql, which the Jaeger backend ignores', () => {
  // The configuration the issue found broken (and this repo shipped before): an internal link.
  const [{ traceId, links: made }] = links([{ name: 'trace_id', datasourceUid: byType.jaeger.uid, urlDisplayLabel: 'Open trace' }]);
  const internal = made[0];
  // the very link the issue saw: /explore?left={"datasource":"jaeger","queries":[{"query":"<id>","queryType":"traceql"}]}
  const [pane] = explorePanes(internal.href);
  assert.equal(pane.datasource, byType.jaeger.uid);
  assert.equal(pane.queries[0].query, traceId);
  assert.equal(pane.queries[0].queryType, 'traceql');
  assert.ok(!JAEGER_QUERY_TYPES.has(pane.queries[0].queryType), 'if Grafana ever sends a type Jaeger handles, revisit the url: destination');
});

test('span-metrics style exemplars (label traceID, a 31-character ID) get the same two links', () => {
  // Our own answer in the span-metrics shape (tests/fixtures/own/README.md).
  const body = JSON.parse(fs.readFileSync(path.join(REPO, 'tests/fixtures/own/prom_query_exemplars.spanmetrics_traceID.json'), 'utf8'));
  const made = links(byType.prometheus.jsonData.exemplarTraceIdDestinations, body, 'traceID');
  assert.ok(made.some(({ traceId }) => traceId.length === 31));
  for (const { traceId, links: row } of made) {
    assert.deepEqual(row.map((l) => l.title), ['Open trace', 'Correlate: trace + logs + exemplars']);
    assert.equal(explorePanes(row[0].href)[0].queries[0].query, traceId);
    assert.match(row[1].href, new RegExp(`/correlate/${traceId}$`));
  }
});
