// Grafana's published packages are browser code: @grafana/data reads `window` at load,
// @grafana/ui (pulled in by @grafana/runtime) imports CSS and measures the screen through
// uPlot. Grafana's own Jest setup gives them jsdom, a CSS stub and a matchMedia stub; this
// file does the same for `node --test`, and nothing else.
require('global-jsdom/register');

require.extensions['.css'] = () => {};
// Node's own Event classes are not jsdom's: uPlot dispatches a CustomEvent on window.
globalThis.CustomEvent = window.CustomEvent;
globalThis.Event = window.Event;
globalThis.matchMedia = window.matchMedia = () => ({
  matches: false, addListener() {}, removeListener() {}, addEventListener() {}, removeEventListener() {},
});
