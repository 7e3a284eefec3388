// A real OpenID Provider on loopback, configured like FranceConnect v2, for the tests of
// api/franceconnect.py (tests/test_franceconnect.py starts it, and kills it at the end).
//
//   node provider.js CONFIG.json
//
// CONFIG: { port, clients: [{client_id, client_secret, redirect_uris,
//   post_logout_redirect_uris, alg}], identities: PATH, lifetime_seconds }.
// Like FranceConnect v2: authorisation code flow only, client_secret_post, PKCE (S256),
// acr_values eidas1, ID tokens AND userinfo signed (ES256 or RS256, per client) with keys
// published at /jwks, the identity claims one scope each, RP-initiated logout.
// The development login form (/interaction/:uid) takes any login and password: the login
// names an identity of the IDENTITIES file, read at each login, so tests add people to it
// while the provider runs.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;

const IDENTITY_CLAIMS = [
  'given_name', 'family_name', 'birthdate', 'gender', 'birthplace', 'birthcountry', 'email',
];

function signingKey(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${randomBytes(4).toString('hex')}` };
}

function identities() {
  return JSON.parse(readFileSync(config.identities, 'utf8'));
}

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    client_id: client.client_id,
    client_secret: client.client_secret,
    redirect_uris: client.redirect_uris,
    post_logout_redirect_uris: client.post_logout_redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: client.alg,
    userinfo_signed_response_alg: client.alg,
  })),
  jwks: {
    keys: [
      signingKey('ec', { namedCurve: 'P-256' }, 'ES256'),
      signingKey('rsa', { modulusLength: 2048 }, 'RS256'),
    ],
  },
  acrValues: ['eidas1'],
  claims: {
    openid: ['sub'],
    acr: null,
    auth_time: null,
    ...Object.fromEntries(IDENTITY_CLAIMS.map((claim) => [claim, [claim]])),
  },
  scopes: ['openid', ...IDENTITY_CLAIMS],
  responseTypes: ['code'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    jwtUserinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  async findAccount(ctx, id) {
    const claims = identities()[id];
    if (!claims) {
      return undefined;
    }
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...claims };
      },
    };
  },
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});

function stop() {
  server.close();
  process.exit(0);
}

// Bounded: gone when the tests close its stdin (or die), and after its lifetime in any case.
process.stdin.on('end', stop);
process.stdin.resume();
setTimeout(stop, (config.lifetime_seconds || 600) * 1000).unref();
process.on('SIGTERM', stop);
