// Partner apps and a service account as real clients: panva's oauth4webapi gets client-credentials
// tokens from oidc-provider (DPoP-bound with ES256, PS256 and Ed25519 keys, or plain bearer) and
// calls the API through Envoy with nhi-guard, retrying once on `use_dpop_nonce` as RFC 9449 §9
// clients do. One JSON line per call on stdout, for the Rust test to assert on.
//
// Env: OP_TOKEN_URL (http://127.0.0.1:PORT/token), API_PORT (Envoy's plaintext listener),
// CASES (comma-separated: dpop-ES256, dpop-PS256, dpop-Ed25519, bearer, claims).
import * as oauth from 'oauth4webapi';

const ISSUER = 'https://op.bank.example';
const RESOURCE = 'https://api.bank.example/open-banking';
const API_ORIGIN = 'https://api.bank.example';
const as = { issuer: ISSUER, token_endpoint: process.env.OP_TOKEN_URL };
const insecure = { [oauth.allowInsecureRequests]: true };

// Clients address the API by its public origin (that is what `htu` says); the test reaches it on
// Envoy's loopback listener with the same Host.
const toEnvoy = (url, init) => {
  const u = new URL(url);
  const local = `http://127.0.0.1:${process.env.API_PORT}${u.pathname}${u.search}`;
  return fetch(local, init);
};

async function token(clientId, scope, dpop) {
  const client = { client_id: clientId };
  const auth = oauth.ClientSecretBasic(`${clientId}-secret-for-the-interop-test`);
  const params = { scope, resource: RESOURCE };
  let attempt = async () => {
    const response = await oauth.clientCredentialsGrantRequest(as, client, auth, params, { ...insecure, DPoP: dpop });
    return oauth.processClientCredentialsResponse(as, client, response);
  };
  try {
    return await attempt();
  } catch (err) {
    if (dpop && oauth.isDPoPNonceError(err)) return attempt(); // an AS nonce, if the AS asks
    throw err;
  }
}

function decode(jwt) {
  const [h, p] = jwt.split('.').slice(0, 2).map((s) => JSON.parse(Buffer.from(s, 'base64url').toString()));
  return { header: h, claims: p };
}

// One API call; on `use_dpop_nonce` the DPoP handle has cached the nonce: retry once. Refusals for
// a kid the gateway has not fetched yet (a key rotation at the AS) are retried for up to 5 s.
async function call(accessToken, method, path, dpop) {
  const url = new URL(`${API_ORIGIN}${path}`);
  let nonceRetries = 0;
  let kidRetries = 0;
  for (;;) {
    let response;
    try {
      const body = method === 'GET' ? null : '{}';
      response = await oauth.protectedResourceRequest(accessToken, method, url, { 'content-type': 'application/json' }, body, {
        DPoP: dpop,
        [oauth.customFetch]: toEnvoy,
      });
    } catch (err) {
      if (dpop && oauth.isDPoPNonceError(err) && nonceRetries === 0) {
        nonceRetries += 1;
        continue;
      }
      response = err.response;
      if (!response) throw err;
    }
    const body = await response.json().catch(() => ({}));
    if (body.reason === 'kid_unknown' && kidRetries < 50) {
      kidRetries += 1;
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    return {
      status: response.status,
      reason: body.reason ?? null,
      auth: body.headers?.['x-nhi-auth'] ?? null,
      client: body.headers?.['x-nhi-client'] ?? null,
      nonce_retries: nonceRetries,
      kid_retries: kidRetries,
      www_authenticate: response.headers.get('www-authenticate'),
    };
  }
}

const out = (line) => console.log(JSON.stringify(line));
for (const c of (process.env.CASES ?? '').split(',').filter(Boolean)) {
  if (c.startsWith('dpop-')) {
    const alg = c.slice(5);
    const keyPair = await oauth.generateKeyPair(alg);
    const dpop = oauth.DPoP({ client_id: 'moneywise-app' }, keyPair);
    const t = await token('moneywise-app', 'accounts payments', dpop);
    const { header } = decode(t.access_token);
    for (const [method, path] of [
      ['POST', '/domestic-payment-consents'], // nonces required here
      ['POST', '/account-access-consents'], // no nonce required
    ]) {
      out({ case: c, path, token_type: t.token_type, kid: header.kid, ...(await call(t.access_token, method, path, dpop)) });
    }
  } else if (c === 'bearer') {
    const t = await token('ledger-sync', 'ledger:read');
    out({ case: c, path: '/internal/ledger/accounts/1', token_type: t.token_type, ...(await call(t.access_token, 'GET', '/internal/ledger/accounts/1')) });
  } else if (c === 'claims') {
    const keyPair = await oauth.generateKeyPair('ES256');
    const t = await token('moneywise-app', 'payments', oauth.DPoP({ client_id: 'moneywise-app' }, keyPair));
    out({ case: c, ...decode(t.access_token) });
  } else {
    throw new Error(`unknown case ${c}`);
  }
}
