// What Grafana does to our provisioned strings before a query or a URL leaves the browser,
// read from Grafana's source (paths and versions beside each rule). Two steps:
//   1. provisioning: every string of a provisioning YAML file is env-expanded, `$$` → `$`;
//   2. a click: the macros are replaced with the values below.
const fs = require('node:fs');
const path = require('node:path');
const YAML = require('yaml');

const REPO = path.resolve(__dirname, '..', '..');

// pkg/services/provisioning/values/values.go (12.4.0): split on "$$", expand each part with
// os.ExpandEnv (an unset variable becomes ""), join the parts with "$". Empty environment here.
function provisioningExpand(value) {
  return value.split('$$').map((part) => part.replace(/\$(\{[^}]*\}|[A-Za-z0-9_]+|[*#$@!?-])/g, '')).join('$');
}

function expandAll(node) {
  if (typeof node === 'string') return provisioningExpand(node);
  if (Array.isArray(node)) return node.map(expandAll);
  if (node && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, expandAll(v)]));
  return node;
}

// The datasources as Grafana stores them after reading our provisioning file.
function provisionedDatasources() {
  const text = fs.readFileSync(path.join(REPO, 'provisioning/datasources/datasources.yaml'), 'utf8');
  return expandAll(YAML.parse(text)).datasources;
}

// A real Jaeger v2 span as Grafana's Jaeger datasource hands it to the trace view: the
// seed's getCourses span of nextgen-api. Jaeger keeps service.name as process.serviceName and
// NOT among process.tags (pkg/tsdb/jaeger/utils/client_utils.go, TransformTraceResponse,
// 12.4.0: serviceName and serviceTags = process.Tags are separate frame fields).
const JAEGER_SPAN = {
  traceID: 'ee9361a3a14d7ba0984c0ba7d5223fd4',
  spanID: 'cc32b53f94c34947',
  operationName: 'getCourses',
  duration: 41235, // µs
  startTime: 1796124703368000, // µs
  process: {
    serviceName: 'nextgen-api',
    tags: [
      { key: 'telemetry.sdk.language', value: 'nodejs' },
      { key: 'telemetry.sdk.name', value: 'opentelemetry' },
      { key: 'host.name', value: 'nextgen-api-7d9f' },
    ],
  },
  tags: [{ key: 'query.type', value: 'courses' }, { key: 'result.count', value: 3 }],
};
const JAEGER_TRACE = { traceID: JAEGER_SPAN.traceID, duration: 92400, traceName: 'nextgen-api: GET /api/courses' };

// __tags, as Grafana builds it for trace→logs (crossSignalConfig.ts getFormattedTags) and
// trace→metrics ($__tags): each mapped key looked up in process.tags + span.tags, present ones
// joined as `label="value"`. `service.name` is never there for a Jaeger span: always "".
function formattedTags(span, mapping) {
  const spanTags = [...span.process.tags, ...span.tags];
  return mapping.flatMap(({ key, value }) => {
    const found = spanTags.find((t) => t.key === key)?.value;
    return found ? [`${value || key}="${found}"`] : [];
  }).join(', ');
}

// The one table: every macro our provisioning and dashboards use, how Grafana expands it for
// the Jaeger span above, and where that is decided. `value(ctx)` takes {span, trace, tags,
// field, vars} so the same rows also give the empty cases.
const SUBSTITUTIONS = [
  { macro: '${__trace.traceId}', value: (c) => c.trace.traceID,
    source: 'public/app/features/explore/TraceView/createTraceLink.tsx scopedVarsFromTrace (12.4.0); createSpanLink.tsx legacyCreateSpanLinkFactory' },
  { macro: '${__span.spanId}', value: (c) => c.span.spanID,
    source: 'public/app/features/explore/TraceView/createSpanLink.tsx scopedVarsFromSpan (12.4.0)' },
  { macro: '${__span.name}', value: (c) => c.span.operationName,
    source: 'createSpanLink.tsx scopedVarsFromSpan: name = span.operationName (12.4.0)' },
  { macro: '${__span.duration}', value: (c) => String(c.span.duration),
    source: 'createSpanLink.tsx scopedVarsFromSpan: duration in µs (12.4.0)' },
  { macro: '${__span.tags["service.name"]}', value: (c) => String([...c.span.process.tags, ...c.span.tags].find((t) => t.key === 'service.name')?.value ?? ''),
    source: 'createSpanLink.tsx scopedVarsFromSpan: tags = process.tags + span.tags; Jaeger: no service.name there (pkg/tsdb/jaeger/utils/client_utils.go, 12.4.0)' },
  { macro: '${__tags}', value: (c) => formattedTags(c.span, c.tags),
    source: 'public/app/features/explore/TraceView/crossSignalConfig.ts getFormattedTags; components/logsLink.ts (12.4.0)' },
  { macro: '$__tags', value: (c) => formattedTags(c.span, c.tags),
    source: 'createSpanLink.tsx legacyCreateSpanLinkFactory: __tags = getFormattedTags(getSpanTags(span), tags) (12.4.0)' },
  { macro: '${__value.raw}', value: (c) => c.field,
    source: 'packages/grafana-data/src/field/fieldOverrides.ts getLinksSupplier: the clicked value, unformatted (@grafana/data 12.4.0)' },
  { macro: '${__data.fields.trace_id}', value: (c) => c.field,
    source: 'packages/grafana-data/src/field/fieldOverrides.ts getLinksSupplier: the row\'s trace_id field (@grafana/data 12.4.0)' },
  { macro: '$trace_id', value: (c) => (c.vars.trace_id ?? '').replace(/'/g, "\\\\'"),
    source: 'public/app/plugins/datasource/loki/datasource.ts interpolateQueryExpr → lokiRegularEscape for a textbox (single value, 12.4.0)' },
  { macro: '${trace_id}', value: (c) => c.vars.trace_id ?? '',
    source: 'public/app/features/templating/template_srv.ts replace: textbox value, glob format = raw (12.4.0)' },
  { macro: '${service:pipe}', value: (c) => [].concat(c.vars.service ?? '').join('|'),
    source: 'public/app/features/templating/formatRegistry.ts FormatRegistryID.pipe: a string as is, an array joined with | (12.4.0)' },
  { macro: '${__from}', value: (c) => String(c.vars.__from ?? ''),
    source: 'public/app/features/templating/macroRegistry.ts __from: the time range start, epoch ms (12.4.0)' },
  { macro: '${__to}', value: (c) => String(c.vars.__to ?? ''),
    source: 'public/app/features/templating/macroRegistry.ts __to: the time range end, epoch ms (12.4.0)' },
];

function substitute(text, ctx) {
  let out = text;
  // Longest macros first, so `$__tags` does not eat the start of `${__tags}`'s neighbours.
  for (const row of [...SUBSTITUTIONS].sort((a, b) => b.macro.length - a.macro.length)) {
    out = out.split(row.macro).join(row.value(ctx));
  }
  return out;
}

const REALISTIC = { span: JAEGER_SPAN, trace: JAEGER_TRACE, tags: [], field: JAEGER_SPAN.traceID, vars: { trace_id: JAEGER_SPAN.traceID } };
const EMPTY = { span: { ...JAEGER_SPAN, traceID: '', spanID: '', operationName: '' }, trace: { ...JAEGER_TRACE, traceID: '' },
  tags: [], field: '', vars: { trace_id: '' } };

module.exports = { REPO, EMPTY, JAEGER_SPAN, JAEGER_TRACE, REALISTIC, SUBSTITUTIONS, formattedTags, provisionedDatasources,
  provisioningExpand, substitute };
