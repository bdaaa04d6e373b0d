-- Argo CD resource actions of a migrations.coderanger.net/v1beta1 Migrator (gopher-lua, Lua 5.1, no string
-- library; the live object is the global `obj`).
--
-- retry: enabled only while the migration of the current digest has failed (condition Ready or
-- MigrationsReady is "False" with reason Failed). A failed migration is never rerun in a loop; this is how a
-- person asks for the current digest to be tried again.
local actions = {}
local failed = false
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if (condition.type == "Ready" or condition.type == "MigrationsReady")
      and condition.status == "False"
      and condition.reason == "Failed" then
      failed = true
    end
  end
end
actions["retry"] = {
  ["disabled"] = not failed,
  ["displayName"] = "Retry migration",
  ["iconClass"] = "fa fa-fw fa-redo",
}
return actions
