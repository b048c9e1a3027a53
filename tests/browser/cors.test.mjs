// The frontend's own calls, made by a real browser from another origin: Chromium (Debian's,
// driven by playwright-core) opens a page served on http://localhost:3000 and uses fetch against
// the local API, as the PipeWise frontend does. A page on a disallowed origin must be refused
// by the browser itself.
//
// Needs API_URL and API_TOKEN (tools/contract-tests sets them); CHROMIUM_PATH defaults to
// /usr/bin/chromium.
import assert from "node:assert/strict";
import { launchChromium, servePage } from "./harness.mjs";

const api = process.env.API_URL;
const token = process.env.API_TOKEN;
assert.ok(api && token, "API_URL and API_TOKEN are required");

const allowed = await servePage(3000);
const disallowed = await servePage(4000);
const browser = await launchChromium();
let failed = false;
try {
  const page = await browser.newPage();
  await page.goto("http://localhost:3000/");
  const results = await page.evaluate(async ({ api, token }) => {
    const auth = { Authorization: `Bearer ${token}` };
    const json = { ...auth, "Content-Type": "application/json" };
    const call = async (path, init = {}) => {
      const response = await fetch(`${api}${path}`, init);
      const text = await response.text();
      return {
        status: response.status,
        body: text ? JSON.parse(text) : null,
        requestId: response.headers.get("x-request-id"),
      };
    };
    const out = {};
    out.list = await call("/api/user/integrations/accounts", { headers: auth });
    out.save = await call("/api/user/integrations/accounts", {
      method: "POST",
      headers: json,
      body: JSON.stringify({
        account_id: "gmail-work",
        account_type: "email",
        configuration: { from_address: `me-${Date.now()}@example.com`, access_token: "ya29.browser" },
      }),
    });
    out.listAfter = await call("/api/user/integrations/accounts", { headers: auth });
    out.addTarget = await call("/api/user/communication-targets", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ name: "Ada Lovelace", email: `ada-${Date.now()}@example.com` }),
    });
    out.deleteTarget = await call(`/api/user/communication-targets/${out.addTarget.body.id}`, {
      method: "DELETE",
      headers: auth,
    });
    out.notFound = await call("/api/user/integrations/accounts/does-not-exist", { headers: auth });
    out.invalid = await call("/api/user/communication-targets", {
      method: "POST",
      headers: json,
      body: JSON.stringify({ name: "" }),
    });
    out.noToken = await call("/api/user/integrations/accounts");
    return out;
  }, { api, token });

  assert.equal(results.list.status, 200);
  assert.ok(Array.isArray(results.list.body.accounts));
  assert.ok([200, 201].includes(results.save.status), `save: ${results.save.status}`);
  assert.equal(results.save.body.configuration.access_token, "********");
  assert.ok(results.listAfter.body.accounts.some((a) => a.account_id === "gmail-work"));
  assert.equal(results.addTarget.status, 201);
  assert.equal(results.addTarget.body.email.startsWith("ada-"), true);
  assert.equal(results.deleteTarget.status, 204);
  // Error bodies and the exposed request id are readable by the page.
  assert.equal(results.notFound.status, 404);
  assert.equal(results.notFound.body.error.code, "not_found");
  assert.ok(results.notFound.requestId, "x-request-id is exposed to the page");
  assert.equal(results.notFound.body.error.request_id, results.notFound.requestId);
  assert.equal(results.invalid.status, 422);
  assert.ok(results.invalid.body.error.details.some((d) => d.field === "name"));
  assert.equal(results.noToken.status, 401);
  assert.equal(results.noToken.body.error.code, "unauthorized");

  // Another origin: the browser refuses to hand over the answer (no CORS grant).
  const foreign = await browser.newPage();
  await foreign.goto("http://localhost:4000/");
  const refused = await foreign.evaluate(async ({ api, token }) => {
    try {
      await fetch(`${api}/api/user/integrations/accounts`, { headers: { Authorization: `Bearer ${token}` } });
      return "answered";
    } catch (error) {
      return error.name;
    }
  }, { api, token });
  assert.equal(refused, "TypeError", "a disallowed origin is refused by the browser");
  console.log("browser: 9 calls from http://localhost:3000 behaved as the contract says; http://localhost:4000 was refused");
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
  allowed.close();
  disallowed.close();
}
process.exit(failed ? 1 : 0);
