// Opens a running xent's /docs and /redoc in Debian's headless Chromium with every request that
// is not for 127.0.0.1 aborted, runs "Try it out" on POST /v1/cross-entropy with its default
// (reference) example, saves screenshots, and prints what it saw as one JSON object on stdout.
// tests/browser/test_docs_in_chromium.py runs it and makes the assertions.
//
//   node docs_in_chromium.mjs http://127.0.0.1:PORT ARTIFACTS_DIR
//
// CHROMIUM overrides the browser (default /usr/bin/chromium). Playwright's own browser download is
// never used: playwright-core only drives the executable it is given.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [baseUrl, artifacts] = process.argv.slice(2);
if (!baseUrl || !artifacts) {
  console.error("usage: node docs_in_chromium.mjs BASE_URL ARTIFACTS_DIR");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const WAIT = { timeout: 20_000 };
const started = Date.now();
const elapsed = () => (Date.now() - started) / 1000;
const report = { blocked: [], loopback_requests: 0, failed_requests: [], page_errors: [], timings: {} };

/** Click Execute; return the request URL Swagger UI sent and the status and body it shows. */
async function execute(page, operation) {
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.method() === "POST" && new URL(r.url()).pathname === "/v1/cross-entropy", WAIT),
    operation.locator("button.execute").click(),
  ]);
  const live = operation.locator(".live-responses-table tr.response");
  await live.locator(".response-col_description pre").first().waitFor(WAIT);
  return {
    url: request.url(),
    status: (await live.locator(".response-col_status").first().innerText()).trim(),
    body: await live.locator(".response-col_description pre").first().innerText(),
  };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true, // Playwright adds --headless and a fresh temporary --user-data-dir itself
  // Without the background-networking flags Chromium phones home at start, which a closed network
  // refuses (and which would not be the page's doing anyway).
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 30_000,
});
report.timings.launched = elapsed();

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, serviceWorkers: "block" });
  // The air gap: only loopback answers. Every other URL is aborted and recorded, so the test can
  // assert that the pages needed none of them (a blank page would otherwise pass unnoticed).
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === "127.0.0.1") {
      report.loopback_requests += 1;
      return route.continue();
    }
    report.blocked.push(url.href);
    return route.abort("blockedbyclient");
  });
  context.on("requestfailed", (request) => {
    report.failed_requests.push(`${request.url()} ${request.failure()?.errorText ?? ""}`);
  });

  // Swagger UI: both scoring operations render, and "Try it out" → "Execute" scores the reference.
  const page = await context.newPage();
  page.on("pageerror", (error) => report.page_errors.push(`/docs: ${error}`));
  await page.goto(`${baseUrl}/docs`, { waitUntil: "load", ...WAIT });
  await page.locator(".opblock").first().waitFor(WAIT);
  report.title = await page.title();
  report.operations = await page.$$eval(".opblock", (blocks) =>
    blocks.map((block) => {
      const method = block.querySelector(".opblock-summary-method")?.textContent?.trim() ?? "";
      const path = block.querySelector(".opblock-summary-path")?.getAttribute("data-path") ?? "";
      return `${method} ${path}`;
    }),
  );
  report.timings.docs_rendered = elapsed();

  const operation = page.locator(
    '.opblock.opblock-post:has(.opblock-summary-path[data-path="/v1/cross-entropy"])',
  );
  await operation.locator(".opblock-summary-control").click();
  await operation.locator("button.try-out__btn").click();
  report.request_body = await operation.locator("textarea.body-param__text").inputValue(WAIT);

  // First exactly as a user would: the default (reference) example, nothing else touched.
  report.as_is = await execute(page, operation);
  report.timings.executed_as_is = elapsed();

  // Swagger UI would pre-fill each query parameter that has a schema default, and those options are
  // for NPZ bodies only (a 422 beside JSON; their schemas carry no default since 96f8b5c). The
  // second run empties every query field (the "--" choice) and executes the same body again, so
  // the scoring path is proven even if a default comes back.
  await operation.locator("button.btn-clear").click();
  const queryRows = operation.locator('tr[data-param-in="query"]');
  for (const row of await queryRows.all()) {
    const select = row.locator("select");
    if (await select.count()) await select.selectOption("");
    const input = row.locator("input[type=text]");
    if (await input.count()) await input.fill("");
  }
  report.query_cleared = await execute(page, operation);
  report.timings.executed_query_cleared = elapsed();

  // The whole page, and a readable close-up of the request and the server's answer.
  report.screenshot = join(artifacts, "docs.png");
  await page.screenshot({ path: report.screenshot, fullPage: true });
  const top = await operation.locator(".opblock-section-request-body").boundingBox();
  const bottom = await operation.locator(".live-responses-table").boundingBox();
  const scrollY = await page.evaluate(() => window.scrollY);
  report.response_screenshot = join(artifacts, "docs-try-it-out.png");
  await page.screenshot({
    path: report.response_screenshot,
    fullPage: true,
    clip: { x: 0, y: top.y + scrollY, width: 1280, height: bottom.y + bottom.height - top.y },
  });

  // ReDoc: renders both scoring operations from the same local document.
  const redoc = await context.newPage();
  redoc.on("pageerror", (error) => report.page_errors.push(`/redoc: ${error}`));
  await redoc.goto(`${baseUrl}/redoc`, { waitUntil: "load", ...WAIT });
  await redoc.getByRole("heading", { name: "Binary and multi-label cross-entropy" }).waitFor(WAIT);
  report.redoc_headings = await redoc.locator("h2").allInnerTexts();
  report.redoc_screenshot = join(artifacts, "redoc.png");
  await redoc.screenshot({ path: report.redoc_screenshot });
  report.timings.redoc_rendered = elapsed();
} catch (error) {
  report.error = String(error?.stack ?? error);
} finally {
  await browser.close();
}
report.timings.total = elapsed();
console.log(JSON.stringify(report, null, 2));
process.exit(report.error ? 1 : 0);
