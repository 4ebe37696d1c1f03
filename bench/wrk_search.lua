-- wrk_search.lua - POST /collections/<name>/search with the benchmark's
-- queries, one body per line of the file given after `--`, cycled; each wrk
-- thread starts at a different line. done() prints one JSON line (requests/s,
-- latency percentiles in ms, non-2xx and socket errors) for bench/report.py.
--
-- The requests are formatted once in init(), not per request: wrk shares the
-- machine's two cores with the server, and building a 4 KB request string in
-- Lua per request was wrk CPU counted against the server's throughput.
local reqs = {}
local pos = 0

function init(args)
  local path = args[2]
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, line)
  end
  pos = math.random(#reqs)
end

function request()
  pos = pos % #reqs + 1
  return reqs[pos]
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
