-- Runs an Argo CD customization script (health.lua, discovery.lua, action.lua) the way Argo CD does for
-- scripts configured in argocd-cm, on a stock Lua 5.1 interpreter (gopher-lua, which Argo CD embeds, has
-- Lua 5.1 semantics):
--   lua5.1 harness.lua SCRIPT < INPUT
-- INPUT is a Lua chunk returning { obj = <the resource>, actionParams = <table> }. The script runs with the
-- globals Argo CD gives it — the base and table libraries, an os library with only time and date, and
-- require("os") — and no string library (no string.* and no string methods), so a script that would fail in
-- Argo CD fails here too. The script's return value is printed on stdout as JSON (keys sorted; an empty
-- table is [], as Argo CD's encoder writes it); an error goes to stderr with exit status 2.
local script = arg[1]
if script == nil then
  io.stderr:write("usage: lua5.1 harness.lua SCRIPT < INPUT\n")
  os.exit(64)
end

-- Everything the harness itself needs from the string library, taken before the script runs without it.
local format, byte, gsub = string.format, string.byte, string.gsub
local sort, concat = table.sort, table.concat

local input, inputError = loadstring(io.read("*a"), "=input")
if input == nil then
  io.stderr:write("cannot load the input: " .. tostring(inputError) .. "\n")
  os.exit(2)
end
local given = input()

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

-- HARNESS_NOW (Unix seconds), when set, is the time os.time and os.date report, so tests can fix it.
local now = tonumber(os.getenv("HARNESS_NOW"))
local safeOs = { time = os.time, date = os.date }
if now ~= nil then
  safeOs.time = function(t)
    if t ~= nil then
      return os.time(t)
    end
    return now
  end
  safeOs.date = function(fmt, t)
    return os.date(fmt or "%c", t or now)
  end
end
local env = {
  obj = given.obj,
  actionParams = given.actionParams or {},
  assert = assert,
  error = error,
  getmetatable = getmetatable,
  ipairs = ipairs,
  next = next,
  pairs = pairs,
  pcall = pcall,
  print = print,
  rawequal = rawequal,
  rawget = rawget,
  rawset = rawset,
  select = select,
  setmetatable = setmetatable,
  tonumber = tonumber,
  tostring = tostring,
  type = type,
  unpack = unpack,
  xpcall = xpcall,
  _VERSION = _VERSION,
  table = copy(table),
  os = safeOs,
}
env._G = env
env.require = function(name)
  if name == "os" then
    return safeOs
  end
  error("module '" .. tostring(name) .. "' not found: Argo CD preloads only os", 2)
end

local chunk, loadError = loadfile(script)
if chunk == nil then
  io.stderr:write(tostring(loadError) .. "\n")
  os.exit(2)
end
setfenv(chunk, env)

-- Without Argo CD's string library there is no metatable for strings: ("x"):len() is an error.
local stringMeta = getmetatable("")
local stringIndex = stringMeta.__index
stringMeta.__index = nil
local ok, result = pcall(chunk)
stringMeta.__index = stringIndex
if not ok then
  io.stderr:write(tostring(result) .. "\n")
  os.exit(2)
end

local encode
local function encodeString(s)
  return '"'
    .. gsub(s, '[%c"\\]', function(c)
      if c == '"' then
        return '\\"'
      elseif c == "\\" then
        return "\\\\"
      end
      return format("\\u%04x", byte(c))
    end)
    .. '"'
end

local function isArray(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  for i = 1, n do
    if t[i] == nil then
      return false
    end
  end
  return true
end

encode = function(v, depth)
  local kind = type(v)
  if kind == "nil" then
    return "null"
  elseif kind == "boolean" then
    return tostring(v)
  elseif kind == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("cannot encode the number " .. tostring(v) .. " as JSON")
    end
    if v == math.floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 then
      return format("%d", v)
    end
    return format("%.17g", v)
  elseif kind == "string" then
    return encodeString(v)
  elseif kind == "table" then
    if depth > 100 then
      error("table nested too deeply (a cycle?)")
    end
    local parts = {}
    if isArray(v) then
      for i = 1, #v do
        parts[i] = encode(v[i], depth + 1)
      end
      return "[" .. concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" then
        error("cannot encode a table with a " .. type(k) .. " key as JSON")
      end
      keys[#keys + 1] = k
    end
    sort(keys)
    for i, k in ipairs(keys) do
      parts[i] = encodeString(k) .. ":" .. encode(v[k], depth + 1)
    end
    return "{" .. concat(parts, ",") .. "}"
  end
  error("cannot encode a " .. kind .. " as JSON")
end

local encoded, json = pcall(encode, result, 0)
if not encoded then
  io.stderr:write("the script returned something that is not JSON: " .. tostring(json) .. "\n")
  os.exit(2)
end
io.write(json, "\n")
