-- wrk script: GET each path of a file in turn, with a partner's key.
--   wrk -t1 -c32 -d10s -s scripts/wrk_get_paths.lua http://127.0.0.1:8181 -- PATHS_FILE [KEY]
-- (scripts/load_test.sh and scripts/service_path.sh use it; without KEY, for a demo config
-- with no partners, such as scripts/scale_up.sh's.)
local paths = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  assert(#paths > 0, args[1] .. ": no paths")
  if args[2] then wrk.headers["Authorization"] = "Bearer " .. args[2] end
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
