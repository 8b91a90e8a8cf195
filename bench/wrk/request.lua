-- wrk script used by bench/run.py.
-- Usage: wrk ... -s request.lua URL -- REQUEST_FILE
-- REQUEST_FILE: first line the method, then "Name: value" header lines, a blank line, then
-- the body (raw bytes, to end of file). The request is pre-formatted once per thread (no Lua
-- per request), so wrk's own cost stays small. done() prints one JSON line for run.py.

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local raw = f:read("*a")
  f:close()
  local sep = raw:find("\n\n", 1, true)
  local head, body = raw:sub(1, sep - 1), raw:sub(sep + 2)
  local first = true
  -- keep wrk.headers as is: it already holds the Host header
  for line in head:gmatch("[^\n]+") do
    if first then
      wrk.method = line
      first = false
    else
      local k, v = line:match("^([^:]+):%s*(.*)$")
      wrk.headers[k] = v
    end
  end
  if #body > 0 then
    wrk.body = body
  else
    wrk.body = nil
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d, ' ..
    '"lat_p50_us": %d, "lat_p90_us": %d, "lat_p99_us": %d, "lat_max_us": %d, "lat_mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
