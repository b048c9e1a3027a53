// What the browser tests share: a stand-in frontend page on a local port, and Chromium (Debian's,
// driven by playwright-core) with the flags these machines need. CHROMIUM_PATH defaults to
// /usr/bin/chromium.
import http from "node:http";
import { chromium } from "playwright-core";

// Serves a plain page on 127.0.0.1:`port` (the tests reach it as http://localhost:`port`).
export function servePage(port) {
  const server = http.createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end("<!doctype html><title>PipeWise frontend stand-in</title><p>ok</p>");
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

// Headless Chromium; `localhost` resolves to 127.0.0.1 so pages on localhost are other origins
// than the API on 127.0.0.1.
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--host-resolver-rules=MAP localhost 127.0.0.1",
    ],
  });
}
