// tracing.js — Initialize before app code (the seed tutorial, verbatim in substance).
// Run with: node --require ./tracing.js app.js
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');
const { BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { getNodeAutoInstrumentations } = require('@opentelemetry/auto-instrumentations-node');

// Logs go over OTLP to Loki's native endpoint (/otlp/v1/logs) when an address is given: Loki
// turns service.name into the service_name label and the record's trace and span IDs into
// structured metadata, so Grafana and the correlator find these lines by trace ID.
const logsEndpoint = process.env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT;

const sdk = new NodeSDK({
  serviceName: 'nextgen-api',
  traceExporter: new OTLPTraceExporter({
    // The seed's address; overridable so the same code runs natively and in tests.
    url: process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || 'http://jaeger:4318/v1/traces',
  }),
  logRecordProcessors: logsEndpoint ? [new BatchLogRecordProcessor({ exporter: new OTLPLogExporter({ url: logsEndpoint }) })] : [],
  instrumentations: [getNodeAutoInstrumentations({
    '@opentelemetry/instrumentation-fs': { enabled: false }, // noise: one span per file read
  })],
});

sdk.start();

process.on('SIGTERM', () => {
  sdk.shutdown().finally(() => process.exit(0));
});
