-- wrk script: POST /people with a name no other request uses (thread id,
-- connection counter), so every request is a real create.
local counter = 0
local tid = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
end

function request()
  counter = counter + 1
  local name = string.format("w%d-%d-%d", tid, counter, math.random(1, 1000000000))
  return wrk.format("POST", "/people?name=" .. name)
end
