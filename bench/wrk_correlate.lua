-- wrk script for P3: every request asks for a different trace ID (no cache hits: full work),
-- and the statuses are counted so the summary can tell 5xx from partial answers.
math.randomseed(os.time())

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

local function hex8()
  return string.format("%08x", math.random(0, 0x7fffffff))
end

request = function()
  return wrk.format("GET", "/correlate/" .. hex8() .. hex8() .. hex8() .. hex8())
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    table.insert(parts, status .. ": " .. count)
  end
  table.sort(parts)
  io.write("statuses {" .. table.concat(parts, ", ") .. "}\n")
end
