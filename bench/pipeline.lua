-- wrk script: HTTP/1.1 pipelining, and requests other than "GET /".
--
-- Every write sends DEPTH requests back to back; wrk then waits for DEPTH
-- responses on the connection before it writes the next batch.  wrk
-- counts each response as one request, so "Requests/sec" is responses/s.
--
--   wrk -t1 -c100 -d10s -s bench/pipeline.lua http://127.0.0.1:8080/ -- 16
--   wrk -t1 -c100 -d10s -s bench/pipeline.lua http://127.0.0.1:8080/ -- 1 \
--       POST /items '{"name":"widget","price":9.5}' application/json
--
-- Script arguments (after "--"): DEPTH (default 16), then optionally
-- METHOD, PATH, BODY and CONTENT-TYPE (default: GET /, no body).

local batch

init = function(args)
  local depth = tonumber(args[1]) or 16
  local method = args[2] or "GET"
  local path = args[3] or "/"
  local body = args[4]
  local headers = {}
  if body == "" then
    body = nil
  end
  if args[5] and args[5] ~= "" then
    headers["Content-Type"] = args[5]
  end
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format(method, path, headers, body)
  end
  batch = table.concat(requests)
end

request = function()
  return batch
end
