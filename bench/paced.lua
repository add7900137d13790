-- Open-loop load for wrk: each connection waits a random 0..2*PACE_MS ms
-- (PACE_MS on average, default 100) before each request, so -c1000 keeps
-- 1,000 keep-alive connections open and offers ~10,000 req/s instead of
-- as many as the server can take. wrk times each request from its send,
-- so the latency is the server's, not the pause's.
local pace = tonumber(os.getenv("PACE_MS") or "100")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end

function init(args)
  math.randomseed(os.time() * 100 + (tonumber(wrk.thread:get("seed")) or 0))
end

function delay()
  return math.random(0, 2 * pace)
end
