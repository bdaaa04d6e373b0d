// gopher-lua-runner runs one Argo CD resource customization script (health.lua, an action's discovery.lua
// or action.lua) the way Argo CD's util/lua runs scripts configured in argocd-cm, in gopher-lua, and
// prints what Argo CD would make of the result. Built against Debian's golang-github-yuin-gopher-lua-dev
// (deploy/argocd/lua.ts builds and caches it):
//
//	gopher-lua-runner < request.json > response.json
//
// The request is {"mode": "health"|"discovery"|"action"|"value", "script": "<Lua source>", "name":
// "<chunk name>", "obj": <the live object>, "actionParams": {"<name>": "<value>"}, "now": <Unix seconds>};
// the response {"value": <JSON>} or {"error": "<message>"}.
//
// What it does as Argo CD does (util/lua/lua.go runLuaWithResourceActionParameters, ExecuteHealthLua,
// ExecuteResourceAction, ExecuteResourceActionDiscovery; util/lua/oslib_safe.go; read in v2.6.15 and
// v3.5.1), written anew here:
//   - a state without the standard libraries (SkipOpenLibs, as UseOpenLibs is false for argocd-cm scripts),
//     then only package, base and table opened;
//   - the "safe" os library, time and date only, opened the way Argo CD opens it: OpenSafeOs registers it
//     under the module name "table", which the table library has registered already, so RegisterModule
//     adds nothing (gopher-lua 2017 … v1.1.2 alike): there is no global os, and local os = require("os")
//     (PreloadModule) is the only way to the two functions;
//   - a 1 s deadline on the script (LState.SetContext);
//   - the object as the global obj and actionParams as a table of strings (v2.6 had no actionParams);
//   - the result encoded as layeh.com/gopher-json (the pinned 2019 revision) encodes it: an empty table is
//     [], a table whose first key is a number must be the sequence 1..n, one whose first key is a string
//     must have only string keys, a table met twice is an error;
//   - health: a status outside Healthy, Progressing, Degraded, Suspended, Missing and Unknown becomes
//     Unknown "Lua returned an invalid health status"; an action's object result has empty tables put back
//     as {} where the live object had an object (cleanReturnedObj).
//
// os.date and os.time are gopher-lua's own (Argo CD's safe os library is a copy of them). Argo CD's
// containers run in UTC, and so does this runner. With "now" set, os.time() and os.date(fmt) report that
// instant instead of the clock.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type request struct {
	Mode         string            `json:"mode"`
	Script       string            `json:"script"`
	Name         string            `json:"name"`
	Obj          interface{}       `json:"obj"`
	ActionParams map[string]string `json:"actionParams"`
	Now          *int64            `json:"now"`
}

type response struct {
	Value json.RawMessage `json:"value,omitempty"`
	Error string          `json:"error,omitempty"`
}

func main() {
	time.Local = time.UTC
	var req request
	in, err := io.ReadAll(os.Stdin)
	if err == nil {
		err = json.Unmarshal(in, &req)
	}
	var out response
	if err != nil {
		out.Error = "cannot read the request: " + err.Error()
	} else if value, err := run(req); err != nil {
		out.Error = err.Error()
	} else {
		out.Value = value
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

// safeOs returns the os functions Argo CD's scripts get: gopher-lua's own time and date, optionally with a
// fixed clock.
func safeOs(now *int64) map[string]lua.LGFunction {
	scratch := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer scratch.Close()
	scratch.Push(scratch.NewFunction(lua.OpenOs))
	scratch.Call(0, 1)
	osTable := scratch.Get(-1).(*lua.LTable)
	date := osTable.RawGetString("date").(*lua.LFunction).GFunction
	clock := osTable.RawGetString("time").(*lua.LFunction).GFunction
	if now == nil {
		return map[string]lua.LGFunction{"time": clock, "date": date}
	}
	fixed := *now
	return map[string]lua.LGFunction{
		"time": func(L *lua.LState) int {
			if L.GetTop() == 0 {
				L.Push(lua.LNumber(fixed))
				return 1
			}
			return clock(L)
		},
		"date": func(L *lua.LState) int {
			if L.GetTop() == 0 {
				L.Push(lua.LString("%c"))
			}
			if L.GetTop() == 1 {
				L.Push(lua.LNumber(fixed))
			}
			return date(L)
		},
	}
}

func run(req request) (json.RawMessage, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	osFuncs := safeOs(req.Now)
	libraries := []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		// As Argo CD's OpenSafeOs: into the module named "table" (already there, so nothing is added).
		{lua.OsLibName, func(L *lua.LState) int {
			L.Push(L.RegisterModule(lua.TabLibName, osFuncs))
			return 1
		}},
	}
	for _, lib := range libraries {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	L.PreloadModule(lua.OsLibName, func(L *lua.LState) int {
		L.Push(L.SetFuncs(L.NewTable(), osFuncs))
		return 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)

	params := L.CreateTable(0, len(req.ActionParams))
	for k, v := range req.ActionParams {
		params.RawSetH(lua.LString(k), lua.LString(v))
	}
	L.SetGlobal("actionParams", params)
	L.SetGlobal("obj", toLua(L, req.Obj))

	name := req.Name
	if name == "" {
		name = "script"
	}
	fn, err := L.Load(bytes.NewReader([]byte(req.Script)), name)
	if err != nil {
		return nil, err
	}
	L.Push(fn)
	if err := L.PCall(0, lua.MultRet, nil); err != nil {
		// Argo CD drops the Lua stack trace from run errors, since they reach the user.
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			return nil, errors.New(apiErr.Object.String())
		}
		return nil, err
	}
	result := L.Get(-1)

	switch req.Mode {
	case "health":
		return health(result)
	case "discovery", "action":
		if result.Type() != lua.LTTable {
			return nil, fmt.Errorf("expect table output from Lua script, not %s", result.Type().String())
		}
		encoded, err := encode(result, map[*lua.LTable]bool{})
		if err != nil {
			return nil, err
		}
		if req.Mode == "action" {
			return cleanAction(encoded, req.Obj)
		}
		return encoded, nil
	case "value":
		return encode(result, map[*lua.LTable]bool{})
	}
	return nil, fmt.Errorf("unknown mode %q", req.Mode)
}

// toLua converts a decoded JSON value the way Argo CD's decodeValue does; null becomes nil.
func toLua(L *lua.LState, v interface{}) lua.LValue {
	switch x := v.(type) {
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []interface{}:
		t := L.CreateTable(len(x), 0)
		for _, item := range x {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]interface{}:
		t := L.CreateTable(0, len(x))
		for k, item := range x {
			t.RawSetH(lua.LString(k), toLua(L, item))
		}
		return t
	}
	return lua.LNil
}

var (
	errNested      = errors.New("cannot encode recursively nested tables to JSON")
	errSparseArray = errors.New("cannot encode sparse array")
	errInvalidKeys = errors.New("cannot encode mixed or invalid key types")
)

// encode writes a Lua value as JSON with gopher-json's rules (see the header).
func encode(v lua.LValue, visited map[*lua.LTable]bool) (json.RawMessage, error) {
	switch x := v.(type) {
	case lua.LBool:
		return json.Marshal(bool(x))
	case lua.LNumber:
		return json.Marshal(float64(x))
	case lua.LString:
		return json.Marshal(string(x))
	case *lua.LNilType:
		return json.RawMessage("null"), nil
	case *lua.LTable:
		if visited[x] {
			return nil, errNested
		}
		visited[x] = true
		key, value := x.Next(lua.LNil)
		switch key.Type() {
		case lua.LTNil:
			return json.RawMessage("[]"), nil
		case lua.LTNumber:
			var items []json.RawMessage
			expected := lua.LNumber(1)
			for key != lua.LNil {
				if key.Type() != lua.LTNumber {
					return nil, errInvalidKeys
				}
				if key != expected {
					return nil, errSparseArray
				}
				item, err := encode(value, visited)
				if err != nil {
					return nil, err
				}
				items = append(items, item)
				expected++
				key, value = x.Next(key)
			}
			return json.Marshal(items)
		case lua.LTString:
			fields := map[string]json.RawMessage{}
			for key != lua.LNil {
				if key.Type() != lua.LTString {
					return nil, errInvalidKeys
				}
				item, err := encode(value, visited)
				if err != nil {
					return nil, err
				}
				fields[key.String()] = item
				key, value = x.Next(key)
			}
			return json.Marshal(fields)
		}
		return nil, errInvalidKeys
	}
	return nil, fmt.Errorf("cannot encode %s to JSON", v.Type().String())
}

var validHealth = map[string]bool{"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true}

// health is ExecuteHealthLua's reading of the result.
func health(result lua.LValue) (json.RawMessage, error) {
	switch result.Type() {
	case lua.LTNil:
		return json.RawMessage("{}"), nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", result.Type().String())
	}
	encoded, err := encode(result, map[*lua.LTable]bool{})
	if err != nil {
		return nil, err
	}
	if string(encoded) == "[]" {
		return json.RawMessage("{}"), nil
	}
	var status struct {
		Status  string `json:"status,omitempty"`
		Message string `json:"message,omitempty"`
	}
	if err := json.Unmarshal(encoded, &status); err != nil {
		return nil, err
	}
	if !validHealth[status.Status] {
		status.Status = "Unknown"
		status.Message = "Lua returned an invalid health status"
	}
	return json.Marshal(status)
}

// cleanAction is ExecuteResourceAction's treatment of an old-style (object) result: where the live object
// had an object and the script returns an empty table (encoded []), the object is kept as {}.
func cleanAction(encoded json.RawMessage, live interface{}) (json.RawMessage, error) {
	if len(encoded) > 0 && encoded[0] == '[' {
		return encoded, nil // a new-style list of impacted resources
	}
	var returned interface{}
	if err := json.Unmarshal(encoded, &returned); err != nil {
		return nil, err
	}
	return json.Marshal(cleanValue(returned, live))
}

func cleanValue(returned, live interface{}) interface{} {
	switch r := returned.(type) {
	case map[string]interface{}:
		l, ok := live.(map[string]interface{})
		if !ok {
			return r
		}
		for k, v := range r {
			if old, ok := l[k]; ok {
				if arr, isArr := v.([]interface{}); isArr && len(arr) == 0 {
					if _, wasObj := old.(map[string]interface{}); wasObj {
						r[k] = map[string]interface{}{}
						continue
					}
				}
				r[k] = cleanValue(v, old)
			}
		}
		return r
	case []interface{}:
		l, ok := live.([]interface{})
		if !ok {
			return r
		}
		for i := range r {
			if i < len(l) {
				r[i] = cleanValue(r[i], l[i])
			}
		}
		return r
	}
	return returned
}
