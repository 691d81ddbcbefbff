-- wrk script: POST a fixed JSON body with fixed headers, print one JSON summary line.
--
-- Inputs (environment):
--   BENCH_BODY     request body (JSON text)
--   BENCH_HEADERS  extra headers, one "Name: value" per line (Authorization, x-mock-*)
-- Output: one line starting with "BENCH_JSON " followed by a JSON object (see done()).

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"

local extra = os.getenv("BENCH_HEADERS") or ""
for line in string.gmatch(extra, "[^\n]+") do
  local name, value = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
