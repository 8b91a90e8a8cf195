-- Like request.lua, but each request carries the next of many bearer tokens (bench/oidc_bench.py):
-- the request file's "X-Bench-Tokens: PATH" line names a file of tokens, one a line, and is not
-- sent. With more tokens than pyfunc remembers as verified, every request's token is verified in
-- full. It formats each request in Lua, so wrk costs more per request than with request.lua.

local counter = 0
local tokens = {}

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local raw = f:read("*a")
  f:close()
  local sep = raw:find("\n\n", 1, true)
  local head, body = raw:sub(1, sep - 1), raw:sub(sep + 2)
  local first = true
  for line in head:gmatch("[^\n]+") do
    if first then
      wrk.method = line
      first = false
    else
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k == "X-Bench-Tokens" then
        for token in io.lines(v) do tokens[#tokens + 1] = token end
      else
        wrk.headers[k] = v
      end
    end
  end
  if #body > 0 then wrk.body = body else wrk.body = nil end
end

function request()
  counter = counter + 1
  wrk.headers["Authorization"] = "Bearer " .. tokens[counter % #tokens + 1]
  return wrk.format()
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
