-- wrk script of scripts/bench-compare.sh: the capacity run (closed model,
-- each connection sends its next request as soon as the previous answer is in).
--   wrk ... -s scripts/bench-compare.lua BASE_URL -- IDS_FILE PATH_PREFIX [API_KEY]
-- Requests walk IDS_FILE (one order id a line, the same file for every target)
-- in order, each wrk thread from its own offset, as GET PATH_PREFIX..id, with
-- identity encoding like the oha runs. Prints one JSON line (microseconds).

local thread_count = 0
function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local reqs, n, i = {}, 0, 0
function init(args)
  local ids, prefix, key = args[1], args[2], args[3]
  wrk.headers["accept-encoding"] = "identity"
  if key and key ~= "" then wrk.headers["x-api-key"] = key end
  -- Formatted once here, so the hot loop does no Lua string work.
  for id in io.lines(ids) do
    if id ~= "" then
      n = n + 1
      reqs[n] = wrk.format("GET", prefix .. id)
    end
  end
  i = ((thread_index or 0) * 7919) % n
end

function request()
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
