#!/usr/bin/env node
// Opens one study in the real OHIF viewer v3 (the prebuilt `dist/` of @ohif/app) in headless
// Chromium and reports, as one JSON line on stdout, whether every image of the study loaded.
//
//   node run-ohif.mjs --dicomweb http://127.0.0.1:8080/dicom-web --study 1.2.3 \
//        [--expect-images N] [--patient-name "DOE^JOHN"] [--timeout 120] \
//        [--screenshot out.png] [--worklist] [--requests-out requests.json] [--verbose]
//
// OHIF and the DICOMweb server are put on one origin: a small HTTP server on 127.0.0.1:<port 0>
// serves OHIF's dist/ with a generated app-config.js, and reverse-proxies the DICOMweb root's
// path (e.g. /dicom-web) to --dicomweb, streaming bodies untouched. Exit status: 0 when ok,
// 1 when a check failed, 2 on a usage error. Progress goes to stderr; stdout gets only the JSON.

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const T0 = Date.now();

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE = `usage: node run-ohif.mjs --dicomweb URL --study UID [options]
  --dicomweb URL        DICOMweb root of the server under test, e.g. http://127.0.0.1:8080/dicom-web
  --study UID           StudyInstanceUID to open
  --expect-images N     stop (and pass) once N images have loaded, instead of all images
                        listed by the series metadata
  --patient-name NAME   worklist: expected patient name (default: PatientName from the metadata)
  --study-date YYYYMMDD, --description TEXT, --modalities CT,MR
                        worklist: override the expectations otherwise taken from the metadata
  --worklist            also open the study list and check the study's row
  --timeout SECONDS     overall time budget (default 120)
  --idle SECONDS        give up early once OHIF has had no DICOMweb request in flight and
                        started none for this long (default 15)
  --screenshot FILE     save a PNG of the viewer (and FILE-worklist.png of the study list)
  --requests-out FILE   write every DICOMweb request (browser and proxy view) as JSON
  --host-header MODE    Host sent upstream: "proxy" (default: the proxy's own host, as the
                        X-Forwarded-Host) or "backend" (the --dicomweb host; only the
                        X-Forwarded-*/Forwarded headers then name the proxy)
  --chromium PATH       browser binary (default $CHROMIUM or /usr/bin/chromium)
  --ohif-dist DIR       OHIF build (default node_modules/@ohif/app/dist beside this script)
  --strict              also fail on console errors and uncaught page errors (e.g. a viewport
                        that cannot render what the metadata describes)
  --verbose             more progress on stderr`;

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      dicomweb: { type: 'string' },
      study: { type: 'string' },
      'expect-images': { type: 'string' },
      'patient-name': { type: 'string' },
      'study-date': { type: 'string' },
      description: { type: 'string' },
      modalities: { type: 'string' },
      timeout: { type: 'string', default: '120' },
      idle: { type: 'string', default: '15' },
      screenshot: { type: 'string' },
      worklist: { type: 'boolean', default: false },
      'requests-out': { type: 'string' },
      'host-header': { type: 'string', default: 'proxy' },
      chromium: { type: 'string' },
      'ohif-dist': { type: 'string' },
      strict: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }));
} catch (e) {
  usageError(e.message);
}
if (args.help) {
  process.stderr.write(USAGE + '\n');
  process.exit(0);
}
if (!args.dicomweb || !args.study) usageError('--dicomweb and --study are required');

let backend;
try {
  backend = new URL(args.dicomweb);
} catch {
  usageError(`--dicomweb is not a URL: ${args.dicomweb}`);
}
if (!['http:', 'https:'].includes(backend.protocol)) usageError('--dicomweb must be http(s)');
const BACKEND_PATH = backend.pathname.replace(/\/+$/, '');
// The DICOMweb root is mounted on the proxy at the backend's own path, so absolute URLs that the
// backend builds (BulkDataURI) from Host / X-Forwarded-* land back on the proxy unchanged. A
// backend at "/" is mounted at /dicom-web with the prefix swapped on the way through.
const MOUNT = BACKEND_PATH || '/dicom-web';
const STUDY = args.study.trim();
const TIMEOUT_MS = Math.max(5, Number(args.timeout) || 120) * 1000;
const IDLE_MS = Math.max(1, Number(args.idle) || 15) * 1000;
const EXPECT = args['expect-images'] !== undefined ? parseInt(args['expect-images'], 10) : null;
if (EXPECT !== null && !(EXPECT >= 0)) usageError('--expect-images must be a number');
if (!['proxy', 'backend'].includes(args['host-header'])) usageError('--host-header is proxy or backend');
const CHROMIUM = args.chromium || process.env.CHROMIUM || '/usr/bin/chromium';
const DIST = path.resolve(args['ohif-dist'] || path.join(HERE, 'node_modules', '@ohif', 'app', 'dist'));
const VERBOSE = args.verbose;
const DEADLINE = T0 + TIMEOUT_MS;

function usageError(msg) {
  process.stderr.write(`run-ohif: ${msg}\n${USAGE}\n`);
  process.exit(2);
}
function log(msg) {
  process.stderr.write(`[ohif ${((Date.now() - T0) / 1000).toFixed(1)}s] ${msg}\n`);
}
function vlog(msg) {
  if (VERBOSE) log(msg);
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
// For Promise.race bounds: a timer that does not keep the process alive once all else is done.
const bound = ms => new Promise(r => setTimeout(r, ms).unref());
const clip = (s, n = 500) => (s && s.length > n ? s.slice(0, n) + '…' : s);

// ---------------------------------------------------------------------------------------------
// State shared by the proxy, the browser hooks and the summary

const summary = {
  ok: false,
  study: STUDY,
  images_loaded: 0, // distinct frames whose WADO-RS request returned 2xx with a complete body
  images_decoded: 0, // distinct images cornerstone reported as loaded (IMAGE_LOADED)
  images_expected: null, // from the series metadata (frames of instances with pixel data)
  expect_images: EXPECT,
  failed_requests: [],
  requests: 0,
  request_kinds: {},
  image_load_failures: [],
  bulkdata_uris: { checked: 0, bad: [] },
  worklist: null,
  errors: [], // console errors and uncaught page errors
  reasons: [], // why ok is false
  other_failures: [], // failed non-DICOMweb requests (OHIF's own files, external hosts)
  timings: {},
  proxy: { requests: 0, upstream_errors: 0 },
};
const browserRequests = []; // every DICOMweb request as the page saw it
const proxyLog = []; // every request as the proxy saw it
const reqRecords = new Map(); // playwright Request -> record
const loadedKeys = new Set(); // "<sop>/<frame>" with a 2xx frames response
const decodedKeys = new Set();
const failedDecode = new Map();
const expectedKeys = new Set();
const seriesListed = new Set(); // series UIDs from the study's series QIDO
const seriesWithMetadata = new Set();
const metadataAttrs = { patientName: null, patientId: null, accession: null, studyDate: null, description: null, modalities: new Set() };
let decodeHook = false;
let phase = 'viewer';
let navigating = false;
let lastActivity = Date.now(); // last DICOMweb request start or end seen in the page
let origin = ''; // http://127.0.0.1:<port>, known once the server listens

function mark(name) {
  summary.timings[name] = Date.now() - T0;
}

// ---------------------------------------------------------------------------------------------
// HTTP server: OHIF's dist/, a generated app-config.js, and the DICOMweb reverse proxy

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.gif': 'image/gif',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json',
  '.onnx': 'application/octet-stream',
};

function appConfig() {
  // Modelled on the app-config used for shared/reference/ohif-requests.md; `studyPrefetcher`
  // makes OHIF fetch every image of the study, not just the ones on screen.
  return `/** generated by tests/ohif/run-ohif.mjs */
(function () {
  var root = window.location.origin + ${JSON.stringify(MOUNT)};
  window.config = {
    name: 'tsunagi-e2e',
    routerBasename: null,
    extensions: [],
    modes: [],
    customizationService: {},
    showStudyList: true,
    maxNumberOfWebWorkers: 3,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    investigationalUseDialog: { option: 'never' },
    maxNumRequests: { interaction: 100, thumbnail: 75, prefetch: 25 },
    studyPrefetcher: { enabled: true, displaySetsCount: 1000, maxNumPrefetchRequests: 25, order: 'closest' },
    defaultDataSourceName: 'dicomweb',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'dicomweb',
        configuration: {
          friendlyName: 'DICOMweb under test',
          name: 'dicomweb',
          qidoRoot: root,
          wadoRoot: root,
          wadoUriRoot: root,
          qidoSupportsIncludeField: true,
          supportsReject: false,
          dicomUploadEnabled: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: true,
          supportsWildcard: true,
          omitQuotationForMultipartRequest: true,
          bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        },
      },
    ],
    httpErrorHandler: function (error) {
      console.warn('OHIF httpErrorHandler', error && error.status);
    },
  };
})();
`;
}

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'trailers',
  'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate',
]);
const upstreamAgent = new (backend.protocol === 'https:' ? https : http).Agent({ keepAlive: true, maxSockets: 64 });

function proxy(req, res) {
  const t = Date.now();
  const proxyHost = req.headers.host || new URL(origin).host;
  const upstreamPath = BACKEND_PATH + req.url.slice(MOUNT.length);
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
  headers.host = args['host-header'] === 'backend' ? backend.host : proxyHost;
  headers['x-forwarded-host'] = proxyHost;
  headers['x-forwarded-proto'] = 'http';
  const peer = req.socket.remoteAddress || '127.0.0.1';
  headers['x-forwarded-for'] = req.headers['x-forwarded-for'] ? `${req.headers['x-forwarded-for']}, ${peer}` : peer;
  // No RFC 7239 `Forwarded`: Orthanc prefers it to Host but does not unquote "host:port".
  delete headers.forwarded;
  const entry = { method: req.method, url: req.url, accept: req.headers.accept || null, status: null, content_type: null, content_encoding: null, bytes: 0, ms: null };
  proxyLog.push(entry);
  summary.proxy.requests++;
  const upstream = (backend.protocol === 'https:' ? https : http).request(
    {
      protocol: backend.protocol,
      hostname: backend.hostname,
      port: backend.port || undefined,
      servername: net.isIP(backend.hostname) ? undefined : backend.hostname,
      method: req.method,
      path: upstreamPath,
      headers,
      agent: upstreamAgent,
    },
    up => {
      entry.status = up.statusCode;
      entry.content_type = up.headers['content-type'] || null;
      entry.content_encoding = up.headers['content-encoding'] || null;
      const out = {};
      for (const [k, v] of Object.entries(up.headers)) if (!HOP_BY_HOP.has(k)) out[k] = v;
      res.writeHead(up.statusCode, up.statusMessage, out);
      up.on('data', c => (entry.bytes += c.length));
      up.on('end', () => (entry.ms = Date.now() - t));
      up.on('error', e => {
        entry.error = `upstream response: ${e.message}`;
        res.destroy(e);
      });
      up.pipe(res);
    },
  );
  upstream.on('error', e => {
    summary.proxy.upstream_errors++;
    entry.error = `upstream: ${e.message}`;
    entry.ms = Date.now() - t;
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`run-ohif proxy: ${e.message}\n`);
    } else res.destroy(e);
  });
  res.on('close', () => {
    if (!res.writableFinished) {
      entry.error = entry.error || 'client closed before the response ended';
      upstream.destroy();
    }
  });
  req.pipe(upstream);
}

function serveStatic(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' });
    return res.end();
  }
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  } catch {
    res.writeHead(400);
    return res.end();
  }
  const send = (status, type, body) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  if (pathname === '/app-config.js') return send(200, MIME['.js'], appConfig());
  const file = path.join(DIST, path.normalize(pathname).replace(/^(\.\.[/\\])+/, ''));
  if (!file.startsWith(DIST)) return send(403, 'text/plain', 'forbidden\n');
  fs.stat(file, (err, st) => {
    if (!err && st.isFile()) {
      res.writeHead(200, {
        'content-type': MIME[path.extname(file).toLowerCase()] || 'application/octet-stream',
        'content-length': st.size,
        'cache-control': 'no-store',
      });
      if (req.method === 'HEAD') return res.end();
      return fs.createReadStream(file).on('error', () => res.destroy()).pipe(res);
    }
    // Missing files with an extension are real 404s (a missing bundle must show); anything
    // else is a client-side route (/viewer, /viewer/dicomweb, ...) and gets index.html.
    if (path.extname(pathname)) return send(404, 'text/plain', 'not found\n');
    fs.readFile(path.join(DIST, 'index.html'), (e, html) => {
      if (e) return send(500, 'text/plain', 'index.html missing\n');
      send(200, MIME['.html'], html);
    });
  });
}

const server = http.createServer((req, res) => {
  const p = req.url.split('?')[0];
  if (p === MOUNT || p.startsWith(MOUNT + '/')) return proxy(req, res);
  serveStatic(req, res);
});
server.keepAliveTimeout = 5000;

// ---------------------------------------------------------------------------------------------
// What the page does: requests, metadata, decoded images, console errors

function isDicomweb(url) {
  if (!url.startsWith(origin)) return false;
  const p = url.slice(origin.length).split('?')[0];
  return p === MOUNT || p.startsWith(MOUNT + '/');
}

// Frames a WADO-RS request asks for: ".../instances/{sop}/frames/1,2" -> ["sop/1", "sop/2"].
function frameKeys(url) {
  const m = /\/instances\/([^/?]+)\/frames\/([0-9,%C]+)/i.exec(url);
  if (!m) return [];
  return decodeURIComponent(m[2]).split(',').filter(Boolean).map(f => `${decodeURIComponent(m[1])}/${parseInt(f, 10)}`);
}

function requestKind(url) {
  const p = url.slice(origin.length + MOUNT.length).split('?')[0];
  if (/\/frames\/[^/]+$/.test(p)) return 'frames';
  if (/\/metadata$/.test(p)) return 'metadata';
  if (/\/(rendered|thumbnail)$/.test(p)) return p.endsWith('thumbnail') ? 'thumbnail' : 'rendered';
  if (/\/bulk|bulkdata/i.test(p)) return 'bulkdata';
  if (/\/instances\/[^/]+$/.test(p)) return 'instance';
  if (/^\/studies\/[^/]+\/series$/.test(p)) return 'qido-series';
  if (/^\/studies$/.test(p)) return 'qido-studies';
  if (/\/instances$/.test(p)) return 'qido-instances';
  if (/^\/studies\/[^/]+$/.test(p)) return 'study';
  return 'other';
}

const attr = (ds, tag) => ds && ds[tag] && Array.isArray(ds[tag].Value) ? ds[tag].Value : null;
function pnText(v) {
  if (!v) return null;
  const x = v[0];
  return typeof x === 'string' ? x : x && (x.Alphabetic || x.Ideographic || x.Phonetic) || null;
}

function checkBulkDataURIs(node) {
  if (Array.isArray(node)) return node.forEach(checkBulkDataURIs);
  if (!node || typeof node !== 'object') return;
  for (const [k, v] of Object.entries(node)) {
    if (k === 'BulkDataURI' && typeof v === 'string') {
      summary.bulkdata_uris.checked++;
      // Absolute URIs must point back at the proxy's origin and DICOMweb root; relative ones
      // are resolved by OHIF against wadoRoot.
      if (/^[a-z][a-z0-9+.-]*:/i.test(v) && !v.startsWith(origin + MOUNT + '/')) {
        if (summary.bulkdata_uris.bad.length < 5) summary.bulkdata_uris.bad.push(v);
        else summary.bulkdata_uris.bad_more = (summary.bulkdata_uris.bad_more || 0) + 1;
      }
    } else if (v && typeof v === 'object') checkBulkDataURIs(v);
  }
}

function onMetadata(url, json) {
  const m = /\/series\/([^/?]+)\/metadata/.exec(url);
  if (m) seriesWithMetadata.add(decodeURIComponent(m[1]));
  if (!Array.isArray(json)) return;
  checkBulkDataURIs(json);
  for (const ds of json) {
    const sop = attr(ds, '00080018')?.[0];
    const hasPixels = ds['7FE00010'] || ds['7FE00008'] || ds['7FE00009'] || attr(ds, '00280010');
    if (sop && hasPixels) {
      const n = parseInt(attr(ds, '00280008')?.[0] ?? '1', 10) || 1;
      for (let f = 1; f <= n; f++) expectedKeys.add(`${sop}/${f}`);
    }
    metadataAttrs.patientName ??= pnText(attr(ds, '00100010'));
    metadataAttrs.patientId ??= attr(ds, '00100020')?.[0] ?? null;
    metadataAttrs.accession ??= attr(ds, '00080050')?.[0] ?? null;
    metadataAttrs.studyDate ??= attr(ds, '00080020')?.[0] ?? null;
    metadataAttrs.description ??= attr(ds, '00081030')?.[0] ?? null;
    const mod = attr(ds, '00080060')?.[0];
    if (mod) metadataAttrs.modalities.add(mod);
  }
  summary.images_expected = expectedKeys.size;
}

function attachPage(page) {
  page.on('request', req => {
    const url = req.url();
    if (!isDicomweb(url)) return;
    const rec = {
      phase,
      method: req.method(),
      url: url.slice(origin.length),
      kind: requestKind(url),
      accept: req.headers().accept || null,
      status: null,
      content_type: null,
      ms: null,
      failure: null,
    };
    rec.t0 = lastActivity = Date.now();
    browserRequests.push(rec);
    reqRecords.set(req, rec);
    summary.request_kinds[rec.kind] = (summary.request_kinds[rec.kind] || 0) + 1;
  });
  page.on('response', resp => {
    const rec = reqRecords.get(resp.request());
    if (!rec) {
      const url = resp.url();
      if (url.startsWith(origin) && resp.status() >= 400) summary.other_failures.push({ url: url.slice(origin.length), status: resp.status() });
      return;
    }
    rec.status = resp.status();
    rec.content_type = resp.headers()['content-type'] || null;
    if (rec.status >= 200 && rec.status < 300) {
      if (rec.kind === 'metadata' && rec.url.includes(`/studies/${STUDY}/`)) {
        resp.json().then(j => onMetadata(rec.url, j), e => (rec.parse_error = `invalid JSON: ${clip(e.message, 200)}`));
      } else if (rec.kind === 'qido-series' && rec.url.includes(`/studies/${STUDY}/series`)) {
        resp.json().then(j => {
          if (Array.isArray(j)) for (const s of j) { const uid = attr(s, '0020000E')?.[0]; if (uid) seriesListed.add(uid); }
        }, () => {});
      }
    }
  });
  page.on('requestfinished', req => {
    const rec = reqRecords.get(req);
    if (!rec) return;
    rec.ms = Date.now() - rec.t0;
    rec.done = true;
    if (rec.kind === 'frames' && rec.status >= 200 && rec.status < 300) {
      for (const k of frameKeys(rec.url)) loadedKeys.add(k);
      summary.images_loaded = loadedKeys.size;
      if (!summary.timings.first_image_ms) mark('first_image_ms');
    }
    lastActivity = Date.now();
  });
  page.on('requestfailed', req => {
    const url = req.url();
    const errorText = req.failure()?.errorText || 'failed';
    const rec = reqRecords.get(req);
    if (!rec) {
      summary.other_failures.push({ url: url.startsWith(origin) ? url.slice(origin.length) : url, failure: errorText });
      return;
    }
    rec.ms = Date.now() - rec.t0;
    rec.done = true;
    rec.failure = errorText;
    lastActivity = Date.now();
    // A page navigated away by this script cancels what was in flight: not the server's fault.
    if (navigating && /ERR_ABORTED/.test(errorText)) rec.aborted_by_navigation = true;
  });
  page.on('console', msg => {
    if (msg.type() !== 'error') return;
    const loc = msg.location();
    summary.errors.push({ phase, type: 'console', text: clip(msg.text()), source: loc?.url ? `${loc.url.replace(origin, '')}:${loc.lineNumber}` : undefined });
  });
  page.on('pageerror', err => summary.errors.push({ phase, type: 'pageerror', text: clip(String(err && err.stack || err)) }));
}

// Cornerstone (exposed by OHIF as window.cornerstone) reports each image it loaded and decoded.
// It also marks OHIF's onboarding tour as seen, so no popup covers the screenshot.
const DECODE_HOOK = `(() => {
  try { localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])); } catch (e) {}
  const attach = () => {
    const cs = window.cornerstone;
    if (!cs || !cs.eventTarget || !cs.EVENTS || typeof window.__tsunagiImage !== 'function') return false;
    cs.eventTarget.addEventListener(cs.EVENTS.IMAGE_LOADED, e => {
      const img = (e && e.detail && e.detail.image) || {};
      // Cornerstone accepts a truncated frame without complaint: check the pixel count.
      let problem = '';
      try {
        const px = typeof img.getPixelData === 'function' ? img.getPixelData() : null;
        const need = (img.rows || 0) * (img.columns || 0) * (img.color ? 3 : 1);
        if (!px) problem = 'no pixel data';
        else if (px.length < need) problem = 'pixel data has ' + px.length + ' values, ' + img.rows + 'x' + img.columns + (img.color ? ' colour' : '') + ' needs ' + need;
      } catch (err) { problem = 'getPixelData: ' + (err && err.message || err); }
      window.__tsunagiImage(problem ? 'failed' : 'loaded', String(img.imageId), problem);
    });
    const failed = e => {
      const d = (e && e.detail) || {};
      const err = d.error;
      window.__tsunagiImage('failed', String(d.imageId), String((err && (err.message || err.status || err.type)) || err || ''));
    };
    cs.eventTarget.addEventListener(cs.EVENTS.IMAGE_LOAD_FAILED, failed);
    window.__tsunagiImage('hook', '', '');
    return true;
  };
  if (!attach()) { const t = setInterval(() => { if (attach()) clearInterval(t); }, 25); }
})();`;

function onImageEvent(kind, imageId, error) {
  if (kind === 'hook') {
    decodeHook = true;
    return;
  }
  const keys = frameKeys(imageId);
  const list = keys.length ? keys : [imageId];
  for (const k of list) {
    if (kind === 'loaded') decodedKeys.add(k);
    else if (kind === 'failed' && !failedDecode.has(k)) failedDecode.set(k, error);
  }
  summary.images_decoded = decodedKeys.size;
}

// ---------------------------------------------------------------------------------------------
// Study list (worklist) check

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
function dateRenderings(da) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(da || '');
  if (!m) return [];
  const [, y, mo, d] = m;
  const mon = MONTHS[parseInt(mo, 10) - 1];
  const dn = String(parseInt(d, 10));
  return [
    `${y}${mo}${d}`, `${y}-${mo}-${d}`, `${y}/${mo}/${d}`, `${y}.${mo}.${d}`,
    `${mon}-${d}-${y}`, `${mon} ${d}, ${y}`, `${mon} ${dn}, ${y}`, `${d}-${mon}-${y}`, `${d} ${mon} ${y}`,
    `${mo}/${d}/${y}`, `${d}/${mo}/${y}`, `${d}.${mo}.${y}`,
  ];
}
const tokens = s => (s || '').toLowerCase().split(/[\s^=,.\\/|;:()]+/).filter(Boolean);

async function worklistCheck(page) {
  const want = {
    patient_name: args['patient-name'] ?? metadataAttrs.patientName,
    study_date: args['study-date'] ?? metadataAttrs.studyDate,
    description: args.description ?? metadataAttrs.description,
    modalities: args.modalities ? args.modalities.split(/[,\\/ ]+/).filter(Boolean) : [...metadataAttrs.modalities].sort(),
  };
  const result = { ok: false, expected: want, row: null, checks: {} };
  const nRequests = browserRequests.length;
  navigating = true;
  phase = 'worklist';
  const tw = Date.now();
  try {
    await page.goto(origin + '/', { waitUntil: 'load', timeout: Math.max(1000, DEADLINE - Date.now()) });
  } finally {
    navigating = false;
  }
  // Wait for the study query to finish and the table to show rows (or "no studies").
  let rows = [];
  let headers = [];
  let queryDoneAt = null;
  while (Date.now() < DEADLINE) {
    const studyQueryDone = browserRequests.slice(nRequests).some(r => r.kind === 'qido-studies' && r.done);
    ({ rows, headers } = await page.evaluate(() => {
      // ui-next StudyList (3.10+): a <table>; the header names the columns (Patient, Study Date,
      // Modalities, Description, Accession, Instances), each body row is a study. Rows with
      // fewer than 3 filled cells (the filter inputs, "no studies") are skipped.
      const headers = [...document.querySelectorAll('thead tr:first-child th, thead tr:first-child td')].map(th => th.innerText.trim());
      const rows = [];
      for (const tr of document.querySelectorAll('tbody tr, [data-cy="study-list-results"] > *')) {
        const cells = [...tr.querySelectorAll('td, [role="cell"]')].map(td => td.innerText.replace(/\s+/g, ' ').trim());
        if (cells.filter(Boolean).length >= 3) rows.push({ text: tr.innerText.replace(/\s+/g, ' ').trim(), cells });
      }
      return { rows, headers };
    }).catch(() => ({ rows: [], headers: [] })));
    if (studyQueryDone) {
      queryDoneAt ??= Date.now();
      // Rows render right after the query; an empty list stays empty.
      if (rows.length || Date.now() - queryDoneAt > 3000) break;
    }
    await sleep(250);
  }
  result.rows_seen = rows.length;
  result.ms = Date.now() - tw;
  // The study's row: the one showing its AccessionNumber, else its patient name, else the only row.
  const acc = metadataAttrs.accession;
  // OHIF shows only the alphabetic group of a PN ("Yamada^Tarou=山田^太郎" -> "Yamada, Tarou").
  const nameTokens = tokens((want.patient_name || '').split('=')[0]);
  let row = acc ? rows.find(r => r.cells.includes(acc)) : null;
  if (!row && nameTokens.length) row = rows.find(r => nameTokens.every(t => r.text.toLowerCase().includes(t)));
  if (!row && rows.length === 1) row = rows[0];
  if (!row) {
    result.error = `no row for the study among ${rows.length} row(s)`;
    result.rows = rows.slice(0, 5).map(r => r.text);
    return result;
  }
  result.row = row.text;
  // Each check reads its own column when the header names it, else the whole row.
  const col = re => {
    const i = headers.findIndex(h => re.test(h));
    return i >= 0 && i < row.cells.length ? row.cells[i] : row.text;
  };
  const shown = {
    patient_name: col(/patient/i),
    study_date: col(/date/i),
    description: col(/descr/i),
    modalities: col(/modalit/i),
  };
  result.shown = shown;
  const c = result.checks;
  // Name: every component of the expected name's alphabetic group shown, in any format
  // ("DOE^JOHN" is shown as "DOE, JOHN").
  c.patient_name = want.patient_name ? nameTokens.every(t => shown.patient_name.toLowerCase().includes(t)) : null;
  c.study_date = want.study_date ? dateRenderings(want.study_date).some(d => shown.study_date.includes(d)) : null;
  c.description = want.description ? shown.description.includes(want.description.trim()) : null;
  const shownModalities = tokens(shown.modalities);
  c.modalities = want.modalities.length ? want.modalities.every(m => shownModalities.includes(m.toLowerCase())) : null;
  const failedChecks = Object.entries(c).filter(([, v]) => v === false).map(([k]) => k);
  const missingExpectations = Object.entries(c).filter(([, v]) => v === null).map(([k]) => k);
  if (missingExpectations.length) result.unchecked = missingExpectations;
  result.failed = failedChecks;
  result.ok = failedChecks.length === 0 && missingExpectations.length === 0;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Main

let browser = null;
let finished = false;

function viewerDone() {
  const loadedAll = set => [...expectedKeys].every(k => set.has(k));
  if (EXPECT !== null) {
    return summary.images_loaded >= EXPECT && (!decodeHook || summary.images_decoded + failedDecode.size >= EXPECT);
  }
  if (!seriesListed.size || [...seriesListed].some(s => !seriesWithMetadata.has(s))) return false;
  if (!expectedKeys.size) return false;
  // An image cornerstone failed on counts as settled (and fails the run), so as not to wait on it.
  return loadedAll(loadedKeys) && (!decodeHook || [...expectedKeys].every(k => decodedKeys.has(k) || failedDecode.has(k)));
}

const seriesQueryEmpty = () => browserRequests.some(r => r.kind === 'qido-series' && r.done && r.status >= 200 && r.status < 300) && !seriesListed.size;
const pendingDicomweb = () => browserRequests.filter(r => !r.done).length;

async function settle(maxMs) {
  // Let requests that OHIF still has in flight finish, so their failures are seen.
  const until = Math.min(DEADLINE, Date.now() + maxMs);
  let quietSince = null;
  while (Date.now() < until) {
    if (pendingDicomweb() === 0) {
      quietSince ??= Date.now();
      if (Date.now() - quietSince >= 750) return;
    } else quietSince = null;
    await sleep(100);
  }
}

async function run() {
  if (!fs.existsSync(path.join(DIST, 'index.html'))) {
    throw new Error(`OHIF build not found at ${DIST}: run ./setup.sh first`);
  }
  if (!fs.existsSync(CHROMIUM)) throw new Error(`chromium not found at ${CHROMIUM}: run ./setup.sh first`);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  origin = `http://127.0.0.1:${server.address().port}`;
  summary.origin = origin;
  summary.dicomweb_root = origin + MOUNT;
  mark('server_ready_ms');
  log(`serving OHIF from ${DIST} at ${origin}, ${MOUNT} -> ${args.dicomweb}`);

  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives the browser a fresh temporary --user-data-dir and removes it on close.
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--enable-unsafe-swiftshader',
    ],
    timeout: Math.max(5000, Math.min(60000, DEADLINE - Date.now())),
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  summary.browser = `chromium ${browser.version()}`;
  mark('browser_ready_ms');
  const context = await browser.newContext({ serviceWorkers: 'block', viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  await page.exposeFunction('__tsunagiImage', onImageEvent);
  await page.addInitScript(DECODE_HOOK);
  attachPage(page);

  const viewerUrl = `${origin}/viewer?StudyInstanceUIDs=${encodeURIComponent(STUDY)}`;
  log(`opening ${viewerUrl.slice(origin.length)}`);
  await page.goto(viewerUrl, { waitUntil: 'load', timeout: Math.max(1000, DEADLINE - Date.now()) });
  mark('page_loaded_ms');
  lastActivity = Date.now();

  let lastReport = 0;
  let stalled = false;
  while (Date.now() < DEADLINE && !viewerDone()) {
    // OHIF has stopped asking: nothing in flight and no new DICOMweb request for IDLE_MS.
    if (pendingDicomweb() === 0 && Date.now() - lastActivity > IDLE_MS) {
      stalled = true;
      break;
    }
    if (Date.now() - lastReport > (VERBOSE ? 2000 : 10000)) {
      lastReport = Date.now();
      log(`images loaded ${summary.images_loaded} decoded ${summary.images_decoded} / expected ${EXPECT ?? summary.images_expected ?? '?'}; series ${seriesWithMetadata.size}/${seriesListed.size || '?'}; DICOMweb requests ${browserRequests.length} (${pendingDicomweb()} pending)`);
    }
    await sleep(100);
  }
  const complete = viewerDone();
  if (complete) mark('all_images_ms');
  log(complete ? `all ${EXPECT ?? summary.images_expected} images loaded` : stalled ? `viewer: no DICOMweb request for ${IDLE_MS / 1000}s, giving up` : 'viewer: timed out');
  await settle(complete ? 5000 : 2000);
  mark('viewer_done_ms');
  if (!complete) summary.reasons.push(describeShortfall().replace(/^timed out/, stalled ? `stalled (OHIF made no request for ${IDLE_MS / 1000}s)` : 'timed out'));

  if (args.screenshot) {
    await page.screenshot({ path: args.screenshot }).then(
      () => (summary.screenshot = args.screenshot),
      e => summary.reasons.push(`screenshot failed: ${e.message}`),
    );
  }

  if (args.worklist) {
    if (Date.now() >= DEADLINE) {
      summary.worklist = { ok: false, error: 'no time left for the worklist check' };
    } else {
      log('checking the study list');
      summary.worklist = await worklistCheck(page).catch(e => ({ ok: false, error: e.message }));
      await settle(3000);
      if (args.screenshot) {
        const wl = args.screenshot.replace(/(\.png)?$/i, '-worklist.png');
        await page.screenshot({ path: wl }).then(() => (summary.worklist.screenshot = wl), () => {});
      }
    }
    mark('worklist_done_ms');
  }
}

function describeShortfall() {
  if (EXPECT !== null) {
    return `timed out: ${summary.images_loaded} of ${EXPECT} expected images loaded` +
      (decodeHook ? `, ${summary.images_decoded} decoded` : '');
  }
  const missingSeries = [...seriesListed].filter(s => !seriesWithMetadata.has(s));
  if (!seriesListed.size) return `timed out before the study's series were listed${seriesQueryEmpty() ? ' (the series query returned none)' : ''}`;
  if (missingSeries.length) return `timed out: no metadata for ${missingSeries.length} of ${seriesListed.size} series`;
  const notLoaded = [...expectedKeys].filter(k => !loadedKeys.has(k));
  const notDecoded = [...expectedKeys].filter(k => !decodedKeys.has(k));
  return `timed out: ${expectedKeys.size - notLoaded.length} of ${expectedKeys.size} images loaded` +
    (decodeHook ? `, ${expectedKeys.size - notDecoded.length} decoded` : '') +
    (notLoaded.length ? `; first missing ${notLoaded.slice(0, 3).join(' ')}` : '');
}

function finish(extraReason) {
  if (finished) return;
  finished = true;
  if (extraReason) summary.reasons.push(extraReason);
  summary.requests = browserRequests.length;
  for (const r of browserRequests) {
    const bad = r.failure ? !r.aborted_by_navigation : (r.status !== null && (r.status < 200 || r.status >= 300)) || !!r.parse_error;
    if (bad) summary.failed_requests.push({ phase: r.phase, method: r.method, url: r.url, status: r.status, content_type: r.content_type, failure: r.failure || r.parse_error || null });
  }
  const pending = browserRequests.filter(r => !r.done);
  if (pending.length) summary.pending_requests = pending.slice(0, 10).map(r => ({ phase: r.phase, url: r.url, status: r.status }));
  for (const [k, e] of failedDecode) if (summary.image_load_failures.length < 20) summary.image_load_failures.push({ image: k, error: clip(e, 300) });
  summary.decode_hook = decodeHook;
  summary.series = { listed: seriesListed.size, with_metadata: seriesWithMetadata.size };
  summary.errors = summary.errors.slice(0, 50);
  summary.other_failures = summary.other_failures.slice(0, 20);
  if (summary.failed_requests.length) summary.reasons.push(`${summary.failed_requests.length} DICOMweb request(s) failed or returned non-2xx`);
  if (pending.length) summary.reasons.push(`${pending.length} DICOMweb request(s) never completed`);
  if (failedDecode.size) summary.reasons.push(`${failedDecode.size} image(s) failed to load or decode in cornerstone`);
  if (args.strict && summary.errors.length) summary.reasons.push(`${summary.errors.length} console/page error(s) (--strict)`);
  if (summary.bulkdata_uris.bad.length) summary.reasons.push('BulkDataURI(s) that do not point back at the proxy origin');
  if (EXPECT === null && summary.images_expected !== null && summary.images_loaded < summary.images_expected && !summary.reasons.some(r => r.startsWith('timed out'))) {
    summary.reasons.push(`${summary.images_loaded} of ${summary.images_expected} images loaded`);
  }
  if (EXPECT !== null && summary.images_loaded < EXPECT && !summary.reasons.some(r => r.startsWith('timed out'))) {
    summary.reasons.push(`${summary.images_loaded} of ${EXPECT} expected images loaded`);
  }
  if (args.worklist && !(summary.worklist && summary.worklist.ok)) {
    const w = summary.worklist || {};
    summary.reasons.push(`worklist check failed${w.failed && w.failed.length ? `: ${w.failed.join(', ')}` : w.error ? `: ${w.error}` : ''}`);
  }
  summary.reasons = [...new Set(summary.reasons)];
  summary.ok = summary.reasons.length === 0;
  summary.timings.total_ms = Date.now() - T0;
  if (args['requests-out']) {
    try {
      fs.writeFileSync(args['requests-out'], JSON.stringify({ browser: browserRequests.map(({ t0, ...r }) => r), proxy: proxyLog }, null, 1));
    } catch (e) {
      log(`could not write ${args['requests-out']}: ${e.message}`);
    }
  }
  process.stdout.write(JSON.stringify(summary) + '\n');
}

async function cleanup() {
  const b = browser;
  browser = null;
  if (b) {
    const t = Date.now();
    await Promise.race([b.close().catch(() => {}), bound(10000)]);
    vlog(`browser closed in ${Date.now() - t} ms`);
  }
  server.closeAllConnections?.();
  await Promise.race([new Promise(r => server.close(() => r())), bound(2000)]);
  upstreamAgent.destroy();
}

// Last resort if something hangs: report, and let Playwright's exit hook kill the browser.
const watchdog = setTimeout(() => {
  finish(`watchdog: still running ${TIMEOUT_MS / 1000 + 60}s after start`);
  process.exit(1);
}, TIMEOUT_MS + 60000);
watchdog.unref();

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, async () => {
    log(`${sig}: closing the browser and the server`);
    finish(`interrupted by ${sig}`);
    await cleanup();
    process.exit(1);
  });
}

let exitCode = 1;
try {
  await run();
} catch (e) {
  summary.reasons.push(`harness error: ${e && e.message ? e.message.split('\n')[0] : e}`);
  log(String(e && e.stack || e));
} finally {
  finish();
  exitCode = summary.ok ? 0 : 1;
  await cleanup();
  log(`${summary.ok ? 'OK' : 'FAILED'}: ${summary.images_loaded} images loaded, ${summary.requests} DICOMweb requests${summary.reasons.length ? '; ' + summary.reasons.join('; ') : ''}`);
  process.exitCode = exitCode;
}
