-- wrk script: POST /v1/infer with real JPEGs as multipart/form-data, cycling through prepared
-- bodies, and a JSON summary (status counts, latency percentiles) on the last line.
--
-- Environment: PENGUIN12_WRK_BODIES (a directory of 00000.bin, 00001.bin, ... multipart bodies),
-- PENGUIN12_WRK_COUNT (how many), PENGUIN12_WRK_BOUNDARY (their multipart boundary) and
-- PENGUIN12_WRK_OFFSET (first body to send). Written for bench/ingest.py.

local dir = os.getenv("PENGUIN12_WRK_BODIES")
local count = tonumber(os.getenv("PENGUIN12_WRK_COUNT"))
local offset = tonumber(os.getenv("PENGUIN12_WRK_OFFSET") or "0")
local content_type = "multipart/form-data; boundary=" .. os.getenv("PENGUIN12_WRK_BOUNDARY")

local bodies = {}
local sent = 0
statuses = {}

function init(args)
  for i = 0, count - 1 do
    local f = assert(io.open(string.format("%s/%05d.bin", dir, i), "rb"))
    bodies[i + 1] = f:read("*a")
    f:close()
  end
end

function request()
  local body = bodies[(offset + sent) % count + 1]
  sent = sent + 1
  return wrk.format("POST", "/v1/infer", { ["Content-Type"] = content_type }, body)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for k, v in pairs(s) do
      merged[k] = (merged[k] or 0) + v
    end
  end
  local parts = {}
  for k, v in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', k, v))
  end
  local e = summary.errors
  io.write(string.format(
    'PENGUIN12_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"statuses": {%s}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ", "),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
