-- Like request.lua, but every request is a new CloudEvent: the ids ("bench-N" in a ce-id header
-- or in a batch body) get a per-thread, per-request prefix. For bench/run.py --group eventing,
-- where dedup must see new events (request.lua's one id would be all duplicates after the first).
-- It formats each request in Lua, so wrk costs more per request than with request.lua: compare
-- its cells with each other, not with request.lua's.

local counter = 0
local prefix = tostring(math.random(1, 1e9))
local headers, body_template = {}, nil

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
      wrk.headers[k] = v
    end
  end
  if #body > 0 then body_template = body end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  prefix = tostring(math.random(1, 1e9))
end

function request()
  counter = counter + 1
  local tag = "n" .. prefix .. "-" .. counter .. "-"
  if wrk.headers["ce-id"] then
    wrk.headers["ce-id"] = tag .. "1"
  end
  local body = body_template
  if body and not wrk.headers["ce-id"] then
    body = body:gsub('"id": "bench%-', '"id": "' .. tag)
  end
  return wrk.format(nil, nil, nil, body)
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
