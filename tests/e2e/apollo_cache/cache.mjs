// Apollo Client's normalised cache (InMemoryCache) against a live server: after each
// mutation whose payload returns the objects it changed (issue 18, item 3), the cached query
// shows the change, read with `cache-only` (no request: counted), and matches what the
// server then answers to the same query.
//   node cache.mjs '{"url": ..., "patient": {id, token}, "closed": {id, token},
//                    "professional": {id, token}}'
// prints one JSON array, an entry per scenario: {name, ok, error?, requests}. Run by
// tests/e2e/test_apollo_cache.py, which installs this folder with `npm ci`.
import { deepStrictEqual, notStrictEqual, strictEqual } from 'node:assert/strict';

import { ApolloClient, ApolloLink, InMemoryCache, Observable, gql } from '@apollo/client/core/index.js';
import { print } from 'graphql';

const config = JSON.parse(process.argv[2] ?? 'null');
if (!config) {
  process.stderr.write('usage: node cache.mjs <json: url, patient, closed, professional>\n');
  process.exit(2);
}
const PDF = '%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n';

// A terminating link of our own: JSON requests, and the GraphQL multipart request when the
// operation's context carries a `file` (it fills variables.input.file), with the CSRF
// header upload clients send. It counts the requests, so a cache-only read is seen to
// make none.
function client(token) {
  const counter = { requests: 0 };
  const link = new ApolloLink(
    (operation) =>
      new Observable((observer) => {
        counter.requests += 1;
        const { file } = operation.getContext();
        const body = {
          query: print(operation.query),
          variables: operation.variables,
          operationName: operation.operationName,
        };
        const headers = { authorization: `Bearer ${token}`, accept: 'application/json' };
        let init;
        if (file) {
          const form = new FormData();
          form.append('operations', JSON.stringify(body));
          form.append('map', JSON.stringify({ 0: ['variables.input.file'] }));
          form.append('0', file, 'report.pdf');
          init = { method: 'POST', body: form, headers: { ...headers, 'apollo-require-preflight': 'true' } };
        } else {
          init = { method: 'POST', body: JSON.stringify(body), headers: { ...headers, 'content-type': 'application/json' } };
        }
        fetch(`${config.url}/graphql`, { ...init, signal: AbortSignal.timeout(10000) })
          .then((response) => response.json())
          .then((result) => {
            observer.next(result);
            observer.complete();
          })
          .catch((error) => observer.error(error));
      }),
  );
  // Connections carry no id: their fields merge into the one cached (edges replaced).
  const connection = { merge: true };
  const cache = new InMemoryCache({
    typePolicies: { DocumentConnection: connection, MessageConnection: connection },
  });
  const apollo = new ApolloClient({ link, cache, defaultOptions: { query: { errorPolicy: 'none' } } });
  return { apollo, counter };
}

async function fetched(c, query, variables) {
  return (await c.apollo.query({ query, variables, fetchPolicy: 'network-only' })).data;
}

// The cached answer, read without a request (`cache-only`), checked against the server's.
async function cached(c, query, variables) {
  const before = c.counter.requests;
  const { data } = await c.apollo.query({ query, variables, fetchPolicy: 'cache-only' });
  strictEqual(c.counter.requests, before, 'a cache-only read made a request');
  return data;
}

async function matchesServer(c, query, variables, data) {
  deepStrictEqual(await fetched(c, query, variables), data, 'the cache differs from the server');
}

const results = [];
async function scenario(name, c, fn) {
  try {
    await fn();
    results.push({ name, ok: true, requests: c.counter.requests });
  } catch (error) {
    results.push({ name, ok: false, error: String(error?.stack ?? error), requests: c.counter.requests });
  }
}

const patient = client(config.patient.token);
const professional = client(config.professional.token);
const patientId = config.patient.id;

const PROFILE = gql`query Profile($id: ID!) {
  patient(id: $id) { id healthProfile { id allergies updatedAt } } }`;
await scenario('updateHealthProfile', patient, async () => {
  const before = await fetched(patient, PROFILE, { id: patientId });
  deepStrictEqual(before.patient.healthProfile.allergies, []);
  // Only the profile is asked for: its id is what merges it into the cached patient.
  const { data } = await patient.apollo.mutate({
    mutation: gql`mutation UpdateProfile($input: UpdateHealthProfileInput!) {
      updateHealthProfile(input: $input) { healthProfile { id allergies updatedAt } } }`,
    variables: { input: { allergies: ['Pénicilline', 'Latex'] } },
  });
  const after = await cached(patient, PROFILE, { id: patientId });
  deepStrictEqual(after.patient.healthProfile.allergies, ['Pénicilline', 'Latex']);
  strictEqual(after.patient.healthProfile.updatedAt, data.updateHealthProfile.healthProfile.updatedAt);
  await matchesServer(patient, PROFILE, { id: patientId }, after);
});

const FEED = gql`query Feed($id: ID!) { patient(id: $id) { id calendarFeedUrl } }`;
await scenario('rotateCalendarFeed', patient, async () => {
  const before = await fetched(patient, FEED, { id: patientId });
  const { data } = await patient.apollo.mutate({
    mutation: gql`mutation Rotate { rotateCalendarFeed(input: {}) {
      calendarFeedUrl patient { id calendarFeedUrl } } }`,
  });
  const after = await cached(patient, FEED, { id: patientId });
  notStrictEqual(after.patient.calendarFeedUrl, before.patient.calendarFeedUrl);
  strictEqual(after.patient.calendarFeedUrl, data.rotateCalendarFeed.calendarFeedUrl);
  await matchesServer(patient, FEED, { id: patientId }, after);
});

const CONSENTS = gql`query Consents($id: ID!) {
  patient(id: $id) { id consents { id active access professional { id } } } }`;
const CONSENTS_PAYLOAD = 'patient { id consents { id active access professional { id } } }';
let consentId;
await scenario('grantConsent', patient, async () => {
  const before = await fetched(patient, CONSENTS, { id: patientId });
  deepStrictEqual(before.patient.consents, []);
  const { data } = await patient.apollo.mutate({
    mutation: gql`mutation Grant($input: GrantConsentInput!) {
      grantConsent(input: $input) { consent { id } ${CONSENTS_PAYLOAD} } }`,
    variables: { input: { professionalId: config.professional.id, access: 'READ_WRITE' } },
  });
  consentId = data.grantConsent.consent.id;
  const after = await cached(patient, CONSENTS, { id: patientId });
  deepStrictEqual(
    after.patient.consents.map(({ id, active, access, professional: p }) => [id, active, access, p.id]),
    [[consentId, true, 'READ_WRITE', config.professional.id]],
  );
  await matchesServer(patient, CONSENTS, { id: patientId }, after);
});

const DOCUMENTS = gql`query Documents($id: ID!) { patient(id: $id) { id
  documents(first: 20) { totalCount edges { cursor node { id title } } } } }`;
let documentIds = [];
await scenario('addDocument', patient, async () => {
  const variables = { id: patientId };
  for (const title of ['Bilan sanguin', 'Ordonnance']) {
    await fetched(patient, DOCUMENTS, variables);
    // The returned edge goes to the head of the cached list (newest first): the client's
    // only work, and no refetch. Its cursor is the server's.
    const { data } = await patient.apollo.mutate({
      mutation: gql`mutation Add($input: AddDocumentInput!) { addDocument(input: $input) {
        document { id title } documentEdge { cursor node { id title } } } }`,
      variables: { input: { title, category: 'LAB_RESULT', file: null } },
      context: { file: new Blob([PDF], { type: 'application/pdf' }) },
      update(cache, { data: { addDocument } }) {
        cache.updateQuery({ query: DOCUMENTS, variables }, (cachedData) => ({
          patient: {
            ...cachedData.patient,
            documents: {
              ...cachedData.patient.documents,
              totalCount: cachedData.patient.documents.totalCount + 1,
              edges: [addDocument.documentEdge, ...cachedData.patient.documents.edges],
            },
          },
        }));
      },
    });
    documentIds = [data.addDocument.document.id, ...documentIds];
    const after = await cached(patient, DOCUMENTS, variables);
    deepStrictEqual(after.patient.documents.edges.map((edge) => edge.node.id), documentIds);
    strictEqual(after.patient.documents.edges[0].cursor, data.addDocument.documentEdge.cursor);
    // the cached list, cursors included, is what the server answers
    await matchesServer(patient, DOCUMENTS, variables, after);
  }
});

await scenario('deleteDocument', patient, async () => {
  const variables = { id: patientId };
  const before = await fetched(patient, DOCUMENTS, variables);
  strictEqual(before.patient.documents.totalCount, 2);
  const [gone, kept] = documentIds;
  await patient.apollo.mutate({
    mutation: gql`mutation Delete($id: ID!) { deleteDocument(input: {documentId: $id}) {
      deletedId patient { id
        documents(first: 20) { totalCount edges { cursor node { id title } } } } } }`,
    variables: { id: gone },
  });
  const after = await cached(patient, DOCUMENTS, variables);
  strictEqual(after.patient.documents.totalCount, 1);
  deepStrictEqual(after.patient.documents.edges.map((edge) => edge.node.id), [kept]);
  await matchesServer(patient, DOCUMENTS, variables, after);
});

await scenario('revokeConsent', patient, async () => {
  await fetched(patient, CONSENTS, { id: patientId });
  await patient.apollo.mutate({
    mutation: gql`mutation Revoke($id: ID!) {
      revokeConsent(input: {consentId: $id}) { consent { id } ${CONSENTS_PAYLOAD} } }`,
    variables: { id: consentId },
  });
  const after = await cached(patient, CONSENTS, { id: patientId });
  deepStrictEqual(after.patient.consents.map(({ id, active }) => [id, active]), [[consentId, false]]);
  await matchesServer(patient, CONSENTS, { id: patientId }, after);
});

const MESSAGES = gql`query Messages($id: ID!) { node(id: $id) { id ... on Conversation {
  unreadCount messages(first: 50) { edges { cursor node { id body } } } } } }`;
let conversationId;
await scenario('sendMessage', patient, async () => {
  const started = await professional.apollo.mutate({
    mutation: gql`mutation Start($input: StartConversationInput!) {
      startConversation(input: $input) { conversation { id } } }`,
    variables: { input: { patientId, subject: 'Vos résultats', body: 'Bonjour, voici vos résultats.' } },
  });
  conversationId = started.data.startConversation.conversation.id;
  const variables = { id: conversationId };
  const before = await fetched(patient, MESSAGES, variables);
  strictEqual(before.node.messages.edges.length, 1);
  // The returned edge goes to the end of the cached list (oldest first).
  const { data } = await patient.apollo.mutate({
    mutation: gql`mutation Send($input: SendMessageInput!) { sendMessage(input: $input) {
      message { id body } messageEdge { cursor node { id body } } } }`,
    variables: { input: { conversationId, body: 'Merci docteur.' } },
    update(cache, { data: { sendMessage } }) {
      cache.updateQuery({ query: MESSAGES, variables }, (cachedData) => ({
        node: {
          ...cachedData.node,
          messages: {
            ...cachedData.node.messages,
            edges: [...cachedData.node.messages.edges, sendMessage.messageEdge],
          },
        },
      }));
    },
  });
  const after = await cached(patient, MESSAGES, variables);
  deepStrictEqual(after.node.messages.edges.map((edge) => edge.node.body), [
    'Bonjour, voici vos résultats.',
    'Merci docteur.',
  ]);
  strictEqual(after.node.messages.edges[1].cursor, data.sendMessage.messageEdge.cursor);
  await matchesServer(patient, MESSAGES, variables, after);
});

await scenario('markConversationRead', patient, async () => {
  const variables = { id: conversationId };
  const before = await fetched(patient, MESSAGES, variables);
  strictEqual(before.node.unreadCount, 1);
  await patient.apollo.mutate({
    mutation: gql`mutation Read($id: ID!) {
      markConversationRead(input: {conversationId: $id}) { conversation { id unreadCount } } }`,
    variables,
  });
  const after = await cached(patient, MESSAGES, variables);
  strictEqual(after.node.unreadCount, 0);
  await matchesServer(patient, MESSAGES, variables, after);
});

// A closed space (closed by the test before this script, then logged into again).
const closed = client(config.closed.token);
const DELETION = gql`query Deletion($id: ID!) { patient(id: $id) { id status deleteBy } }`;
await scenario('requestDeletion', closed, async () => {
  const variables = { id: config.closed.id };
  const before = await fetched(closed, DELETION, variables);
  deepStrictEqual([before.patient.status, before.patient.deleteBy], ['CLOSED', null]);
  const { data } = await closed.apollo.mutate({
    mutation: gql`mutation RequestDeletion($input: RequestDeletionInput!) {
      requestDeletion(input: $input) { deleteBy patient { id status deleteBy } } }`,
    variables: { input: { password: config.closed.password } },
  });
  const after = await cached(closed, DELETION, variables);
  strictEqual(after.patient.deleteBy, data.requestDeletion.deleteBy);
  notStrictEqual(after.patient.deleteBy, null);
  await matchesServer(closed, DELETION, variables, after);
});

process.stdout.write(JSON.stringify(results, null, 1) + '\n');
