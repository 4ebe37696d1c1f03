-- wrk_paced.lua - the soak's searches: POST <path> with one body per line of
-- the file given after `--` (cycled), each connection pausing <delay_ms>
-- between requests so that the load is a fixed rate (about connections /
-- (delay + latency)) rather than wrk's flat-out closed loop. done() prints
-- one JSON line: requests/s, latency percentiles in ms, errors.
--   wrk -t2 -c16 -d10s -s wrk_paced.lua URL -- bodies.txt /collections/c/search 2
local bodies = {}
local pos = 0
local path = "/"
local pause = 0

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  path = args[2]
  pause = tonumber(args[3] or "0")
  pos = math.random(#bodies)
end

function delay()
  return pause
end

function request()
  pos = pos % #bodies + 1
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, bodies[pos])
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
