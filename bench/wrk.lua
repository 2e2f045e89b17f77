-- wrk script shared by every scenario of bench/load.sh.
--
-- Environment:
--   SCENARIO   name printed in the result line
--   MODE       "get" (default: wrk's URL and -H headers), "create" (POST a
--              new entry with a unique name per request) or "login"
--              (POST /auth/login)
--   BODY       request body for MODE=login
--   AUTH       Authorization header value for MODE=create
--   PACE_MS    when set, each connection waits this many milliseconds
--              before each request, which caps the request rate
--
-- done() prints one line that load.sh parses:
--   RESULT <scenario> <requests/s> <p50 ms> <p99 ms> <p99.9 ms> <requests> <non-2xx/3xx> <socket errors and timeouts>

local mode = os.getenv("MODE") or "get"
local pace_ms = tonumber(os.getenv("PACE_MS") or "")

local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_id", thread_count)
end

local counter = 0
local run_id = tostring(os.time()) .. "-" .. tostring(math.random(100000, 999999))

if mode == "create" then
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = os.getenv("AUTH")
elseif mode == "login" then
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.body = os.getenv("BODY")
end

function request()
   if mode ~= "create" then
      return wrk.format()
   end

   -- thread_id is set by setup() in each thread's own Lua state.
   counter = counter + 1
   local body = string.format(
      '{"name": "load-%s-%d-%d", "category": "service", "description": "Created by the load benchmark", "tags": ["bench"]}',
      run_id, thread_id, counter)
   return wrk.format("POST", "/api/v1/registry/entries", nil, body)
end

if pace_ms then
   function delay()
      return pace_ms
   end
end

function done(summary, latency, requests)
   local socket_errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout
   local seconds = summary.duration / 1000000
   io.write(string.format("RESULT %s %.1f %.3f %.3f %.3f %d %d %d\n",
      os.getenv("SCENARIO") or "unnamed",
      summary.requests / seconds,
      latency:percentile(50) / 1000,
      latency:percentile(99) / 1000,
      latency:percentile(99.9) / 1000,
      summary.requests,
      summary.errors.status,
      socket_errors))
end
