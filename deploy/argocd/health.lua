-- Argo CD health of a migrations.coderanger.net/v1beta1 Migrator.
--
-- Argo CD runs this in gopher-lua (Lua 5.1) with the live object in the global `obj`. Scripts configured in
-- argocd-cm get only the package, base and table libraries, plus time/date through require("os"): there
-- is no string library, so this script uses no string.* function and no string method.
--
-- The reconciler keeps two conditions in status.conditions: Ready and MigrationsReady. Both are judged and
-- the worse verdict wins (Degraded > Unknown > Progressing > Healthy), so the result does not depend on how
-- the two split the work between them. By reason:
--   Running, Probing, WaitingForImageID       Progressing: a migration Job or a probe pod is on its way
--   Failed, ProbeFailed, NoDigest, PinFailed, Degraded: gated pods stay gated until someone acts; the
--   InvalidSpec, TemplateNotFound,            message names the reason (and the Job) and the condition's text
--   UnsupportedRuntime
--   WaitingForPods                            Healthy: no selected pod waits for a migration (see below)
--   condition status "True"                   Healthy: the current digest is migrated
--   any other reason                          Unknown: a reason this script does not know; nothing is guessed
-- Before any condition is read: no status yet, or a status (or condition) older than metadata.generation,
-- is Progressing — the reconciler has not looked at this spec yet.
--
-- Why WaitingForPods is Healthy and Suspended is never used: Argo CD applies sync waves in order and starts
-- the next wave only once every resource of the current one is Healthy (Degraded fails the sync; Progressing,
-- Suspended and Unknown keep it waiting). Migrators are synced one wave before the workloads they gate, so on
-- a first sync there are no pods yet; a Migrator that waited for pods there would wait for ever.
local DEGRADED = {
  Failed = true,
  ProbeFailed = true,
  NoDigest = true,
  PinFailed = true,
  InvalidSpec = true,
  TemplateNotFound = true,
  UnsupportedRuntime = true,
}
local PROGRESSING = {
  Running = true,
  Probing = true,
  WaitingForImageID = true,
}
local RANK = { Healthy = 0, Progressing = 1, Unknown = 2, Degraded = 3 }

local function text(reason, message)
  if message == nil or message == "" then
    return reason
  end
  return reason .. ": " .. message
end

local status = obj.status
local generation = tonumber(obj.metadata.generation)

if status == nil then
  return { status = "Progressing", message = "Waiting for the reconciler to observe this Migrator" }
end

local observed = tonumber(status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  return {
    status = "Progressing",
    message = "Waiting for the reconciler to observe generation " .. tostring(generation),
  }
end

-- One verdict for one condition (nil when the condition is absent).
local function judge(condition)
  local reason = condition.reason or ""
  local conditionGeneration = tonumber(condition.observedGeneration)
  if generation ~= nil and conditionGeneration ~= nil and conditionGeneration < generation then
    return "Progressing", "Waiting for the reconciler to update " .. condition.type .. " for generation " .. tostring(generation)
  end
  if condition.status == "True" then
    if condition.message ~= nil and condition.message ~= "" then
      return "Healthy", condition.message
    end
    if status.lastSuccessfulMigration ~= nil then
      return "Healthy", "Migrated " .. status.lastSuccessfulMigration
    end
    return "Healthy", text(reason, nil)
  end
  if DEGRADED[reason] then
    if reason == "Failed" and status.currentJob ~= nil and status.currentJob ~= "" then
      return "Degraded", text("Failed (Job " .. status.currentJob .. ")", condition.message)
    end
    return "Degraded", text(reason, condition.message)
  end
  if PROGRESSING[reason] then
    return "Progressing", text(reason, condition.message)
  end
  if reason == "WaitingForPods" then
    return "Healthy", text(reason, condition.message)
  end
  return "Unknown", text(condition.type .. " is " .. tostring(condition.status) .. " with reason " .. reason, condition.message)
end

local verdict = nil
local message = nil
if status.conditions ~= nil then
  -- Ready first, so that between equal verdicts its message is the one shown.
  for _, wanted in ipairs({ "Ready", "MigrationsReady" }) do
    for _, condition in ipairs(status.conditions) do
      if condition.type == wanted then
        local s, m = judge(condition)
        if verdict == nil or RANK[s] > RANK[verdict] then
          verdict = s
          message = m
        end
      end
    end
  end
end

if verdict == nil then
  return { status = "Progressing", message = "Waiting for the reconciler to report the Ready condition" }
end
return { status = verdict, message = message }
