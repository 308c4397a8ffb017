-- wrk script: HTTP/1.1 pipelining.
--
-- Every write sends DEPTH "GET /" requests back to back; wrk then waits for
-- DEPTH responses on the connection before it writes the next batch.  wrk
-- counts each response as one request, so "Requests/sec" is responses/s.
--
--   wrk -t1 -c100 -d10s -s bench/pipeline.lua http://127.0.0.1:8080/ -- 16
--
-- The depth is the first script argument (after "--"); default 16.

local batch

init = function(args)
  local depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format("GET", "/")
  end
  batch = table.concat(requests)
end

request = function()
  return batch
end
