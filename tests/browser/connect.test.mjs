// Connecting an account as the frontend does it, in a real browser: a page on
// http://localhost:3000 starts a connect session, the browser follows the authorize URL to the
// provider's consent page (the platform stand-in, which consents at once), comes back through
// the API's public callback, and lands on the return URL with `connect=success`; the account is
// then listed. Going back to the callback afterwards shows the page for a spent state.
//
// Needs API_URL and API_TOKEN (tools/contract-tests sets them, and starts the API with its
// provider variables pointing at the stand-in); CHROMIUM_PATH defaults to /usr/bin/chromium.
import assert from "node:assert/strict";
import { launchChromium, servePage } from "./harness.mjs";

const api = process.env.API_URL;
const token = process.env.API_TOKEN;
assert.ok(api && token, "API_URL and API_TOKEN are required");

const frontend = await servePage(3000);
const browser = await launchChromium();
let failed = false;
try {
  const page = await browser.newPage();
  await page.goto("http://localhost:3000/settings");
  const accountId = `x-browser-${Date.now()}`;
  const session = await page.evaluate(async ({ api, token, accountId }) => {
    const response = await fetch(`${api}/api/user/integrations/connect-sessions`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({
        provider: "x",
        account_id: accountId,
        return_url: "http://localhost:3000/settings/integrations",
      }),
    });
    return { status: response.status, body: await response.json() };
  }, { api, token, accountId });
  assert.equal(session.status, 201, JSON.stringify(session.body));
  const authorize = new URL(session.body.authorize_url);
  assert.equal(authorize.searchParams.get("code_challenge_method"), "S256");

  // The frontend sends the browser to the consent page; everything after is redirects.
  const hops = [];
  page.on("request", (request) => {
    if (request.isNavigationRequest()) hops.push(new URL(request.url()).pathname);
  });
  await page.goto(session.body.authorize_url);
  await page.waitForURL(/localhost:3000\/settings\/integrations\?/);
  const landed = new URL(page.url());
  assert.equal(landed.searchParams.get("connect"), "success", page.url());
  assert.equal(landed.searchParams.get("account_id"), accountId);
  assert.ok(!landed.searchParams.has("code") && !landed.searchParams.has("state"));
  assert.ok(hops.includes("/api/user/integrations/oauth/callback"), hops.join(" "));

  const after = await page.evaluate(async ({ api, token, accountId, sessionId }) => {
    const auth = { Authorization: `Bearer ${token}` };
    const account = await fetch(`${api}/api/user/integrations/accounts/${accountId}`, { headers: auth });
    const status = await fetch(`${api}/api/user/integrations/connect-sessions/${sessionId}`, { headers: auth });
    return { account: await account.json(), session: await status.json() };
  }, { api, token, accountId, sessionId: session.body.session_id });
  assert.equal(after.account.connected, true);
  assert.equal(after.account.provider, "x");
  assert.equal(after.account.configuration.username, "ada");
  assert.equal(after.account.configuration.access_token, "********");
  assert.equal(after.session.status, "connected");

  // Going back to the callback (the browser's history): the state is spent, a page says so.
  const replay = await page.goto(`${api}/api/user/integrations/oauth/callback?state=${authorize.searchParams.get("state")}&code=again`);
  assert.equal(replay.status(), 400);
  assert.match(await page.content(), /cannot be used/);
  console.log(`browser: connected ${accountId} through ${hops.length} navigations (consent page, callback, return URL); the spent state was refused`);
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
  frontend.close();
}
process.exit(failed ? 1 : 0);
