-- Argo CD action "retry" of a migrations.coderanger.net/v1beta1 Migrator: sets the annotation
-- migrations.coderanger.net/retry to a new value; the reconciler retries the current digest whenever that
-- value changes. The value is the current UTC time (Argo CD's sandbox offers os.time and os.date); should
-- it equal the value already there (two retries within one second), ".1" is appended so that it still
-- changes. Argo CD patches the live object with the difference, so nothing else is touched.
local os = require("os")
local key = "migrations.coderanger.net/retry"
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local value = os.date("!%Y-%m-%dT%H:%M:%SZ")
if obj.metadata.annotations[key] == value then
  value = value .. ".1"
end
obj.metadata.annotations[key] = value
return obj
