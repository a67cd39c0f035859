-- wrk load script for benchmarks/store_bench.py (--client wrk): the same workload as the
-- Python client, generated in C so the load generator does not eat the cores it measures.
--
-- Each wrk thread has exactly one connection (wrk -t C -c C), so requests and responses
-- alternate and response() knows which request it answers. Each thread loops over
-- read-modify-write cycles, as Dynamo's clients update a key: GET /kv/b<k> for a random k,
-- then PUT /kv/b<k> {"value": <thread>, "context": <the context that GET returned>}. So half
-- the ops are reads, half writes, and siblings only come from writes that were truly
-- concurrent (as in the Python client). Latency is measured per op type with
-- CLOCK_MONOTONIC through LuaJIT's ffi; done() writes one JSON object per thread to
-- $STORE_LOAD_OUT: {"read": [us...], "write": [us...], "errors": {...}, "samples": [...]},
-- after one {"socket_errors": n} line for the whole wrk process.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } dh_timespec;
  int clock_gettime(int clk, dh_timespec *ts);
]]
local ts = ffi.new("dh_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  keys = tonumber(os.getenv("STORE_LOAD_KEYS") or "1000")
  math.randomseed(tonumber(os.getenv("STORE_LOAD_SEED") or "1") * 1000 + id)
  read_ctx = nil              -- the context the last GET returned (JSON text or "null")
  read_lat, write_lat = {}, {}
  errors = { read = 0, write = 0 }
  samples = {}
  pending_kind, pending_key, started = nil, nil, 0
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function request()
  started = now_us()
  if read_ctx == nil then
    pending_key = "b" .. tostring(math.random(0, keys - 1))
    pending_kind = "read"
    return wrk.format("GET", "/kv/" .. pending_key)
  end
  pending_kind = "write"
  local body = '{"value":' .. tostring(id) .. ',"context":' .. read_ctx .. "}"
  read_ctx = nil
  return wrk.format("PUT", "/kv/" .. pending_key, { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  local elapsed = now_us() - started
  if pending_kind == "read" and (status == 200 or status == 404) then
    local ctx = string.match(body, '"context":%s*"([^"]*)"')
    read_ctx = ctx and json_string(ctx) or "null"
  end
  if status ~= 200 then
    errors[pending_kind] = errors[pending_kind] + 1
    if #samples < 3 then
      table.insert(samples, pending_kind .. ": HTTP " .. status .. " " .. string.sub(body or "", 1, 120))
    end
    return
  end
  if pending_kind == "read" then
    read_lat[#read_lat + 1] = elapsed
  else
    write_lat[#write_lat + 1] = elapsed
  end
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("STORE_LOAD_OUT"), "a"))
  local se = summary.errors
  out:write('{"socket_errors":' .. (se.connect + se.read + se.write + se.timeout) .. "}\n")
  for _, thread in ipairs(threads) do
    local e = thread:get("errors")
    local parts = {
      '{"read":[' .. table.concat(thread:get("read_lat"), ",") .. "]",
      '"write":[' .. table.concat(thread:get("write_lat"), ",") .. "]",
      '"errors":{"read":' .. e.read .. ',"write":' .. e.write .. "}",
    }
    local s = {}
    for _, m in ipairs(thread:get("samples")) do s[#s + 1] = json_string(m) end
    parts[#parts + 1] = '"samples":[' .. table.concat(s, ",") .. "]}"
    out:write(table.concat(parts, ",") .. "\n")
  end
  out:close()
end
