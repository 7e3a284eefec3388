// The graphql-http server audit (GraphQL over HTTP) against a live server:
//   node audit.mjs http://127.0.0.1:8000/graphql
// prints one JSON array, an entry per audit: {id, name, status, reason, response}, where
// status is "ok", or for a failed audit "error" (a MUST), "warn" (a SHOULD) or "notice" (a
// MAY). Run by tests/e2e/test_http_audit.py, which installs this folder with `npm ci`.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: node audit.mjs <url of the GraphQL endpoint>\n');
  process.exit(2);
}

const results = [];
for (const audit of serverAudits({ url })) {
  // One at a time: each audit is a request or two, and the order makes the log readable.
  const result = await audit.fn();
  const entry = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    entry.response = {
      status: result.response.status,
      contentType: result.response.headers.get('content-type'),
    };
  }
  results.push(entry);
}
process.stdout.write(JSON.stringify(results, null, 1) + '\n');
