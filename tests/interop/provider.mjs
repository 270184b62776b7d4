// The bank's authorization server for the interoperability test: panva's oidc-provider (OpenID
// certified), configured as a FAPI 2.0 AS issues machine tokens: client credentials, resource
// indicators for RFC 9068 JWT access tokens, DPoP-bound and mTLS-bound tokens, keys at jwks_uri.
//
// Env: OP_HTTP_PORT (plain HTTP: token endpoint for DPoP clients, jwks_uri for Envoy),
// OP_HTTPS_PORT (TLS asking for a client certificate: certificate-bound tokens), OP_PKI (the test
// PKI: server.pem/key, ca.pem), OP_KEYS (a JSON file of the signing keys; created on first start,
// and on OP_ROTATE=1 a new ES256 key is put first, so it signs, and the old ones stay published).
import Provider from 'oidc-provider';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const ISSUER = 'https://op.bank.example';
const RESOURCE = 'https://api.bank.example/open-banking';
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

function newKey(kind, alg) {
  const { privateKey } =
    kind === 'ec'
      ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : kind === 'rsa'
        ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
        : crypto.generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomBytes(4).toString('hex')}` };
}

function signingKeys() {
  const file = env('OP_KEYS');
  let keys = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')).keys : null;
  if (!keys) keys = [newKey('ec', 'ES256'), newKey('rsa', 'PS256'), newKey('ed25519', 'Ed25519')];
  else if (process.env.OP_ROTATE === '1') keys = [newKey('ec', 'ES256'), ...keys];
  fs.writeFileSync(file, JSON.stringify({ keys }));
  return keys;
}

const keys = signingKeys();
const provider = new Provider(ISSUER, {
  jwks: { keys },
  clients: [
    // A partner app (DPoP-bound tokens), a partner app whose tokens are bound to its certificate,
    // and an internal service account with plain bearer tokens.
    {
      client_id: 'moneywise-app',
      client_secret: 'moneywise-app-secret-for-the-interop-test',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      scope: 'accounts payments',
    },
    {
      client_id: 'moneywise-insights',
      client_secret: 'moneywise-insights-secret-for-the-interop-test',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      tls_client_certificate_bound_access_tokens: true,
      scope: 'accounts',
    },
    {
      client_id: 'ledger-sync',
      client_secret: 'ledger-sync-secret-for-the-interop-test',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      scope: 'ledger:read',
    },
  ],
  scopes: ['openid', 'accounts', 'payments', 'ledger:read'],
  cookies: { keys: ['interop-cookie-key-not-used-by-client-credentials'] },
  enabledJWA: { dPoPSigningAlgValues: ['ES256', 'PS256', 'Ed25519', 'EdDSA'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate(ctx) {
        const peer = ctx.socket.getPeerCertificate?.();
        return peer && peer.raw ? new crypto.X509Certificate(peer.raw).toString() : undefined;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== RESOURCE) throw new Error(`unknown resource ${resource}`);
        return {
          scope: 'accounts payments ledger:read',
          audience: RESOURCE,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});
provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error', err));

const tls = (name) => fs.readFileSync(`${env('OP_PKI')}/${name}`);
http.createServer(provider.callback()).listen(Number(env('OP_HTTP_PORT')), '127.0.0.1');
https
  .createServer(
    { key: tls('server.key'), cert: tls('server.pem'), ca: tls('ca.pem'), requestCert: true, rejectUnauthorized: true },
    provider.callback(),
  )
  .listen(Number(env('OP_HTTPS_PORT')), '127.0.0.1', () => {
    console.log(`oidc-provider ${ISSUER} ready; signing kid ${keys[0].kid}`);
  });
