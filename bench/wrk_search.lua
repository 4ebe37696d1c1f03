-- wrk_search.lua - POST /collections/<name>/search with the benchmark's
-- queries, one body per line of the file given after `--`, cycled; each wrk
-- thread starts at a different line. done() prints one JSON line (requests/s,
-- latency percentiles in ms, non-2xx and socket errors) for bench/report.py.
local bodies = {}
local pos = 0
local path = "/"

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  path = args[2]
  pos = math.random(#bodies)
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
