// What a real node leaves on the host, and how to take it away again. The kubelet, containerd and
// runc do not keep everything under the directories they are given:
// - pod cgroups: the kubelet creates <cgroup root>/kubepods/… in every cgroup v1 hierarchy, and the
//   containers' processes live there (the shims outlive a killed containerd);
// - mounts: overlay root filesystems and /dev/shm of sandboxes (under containerd's state dir),
//   secret and projected volumes (tmpfs under the kubelet's root dir), network namespaces (bind
//   mounts under containerd's state dir with netns_mounts_under_state_dir);
// - the CNI bridge in the host's network namespace;
// - /var/log/pods, /var/log/containers and /var/lib/kubelet/device-plugins, whatever --root-dir says;
// - kernel parameters the kubelet sets at start (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, …).
// The node records what it is about to touch in a state file before it starts anything; `cleanHost`
// reads it back and removes everything, so a run that crashed is cleaned up by the next start.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/** The kernel parameters the 1.20 kubelet sets (pkg/kubelet/cm/container_manager_linux.go setupKernelTunables). */
export const KUBELET_SYSCTLS = [
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
];

/** Host paths the kubelet and the CRI plugin write whatever the configured directories. */
export const HOST_PATHS = [
  "/var/log/pods",
  "/var/log/containers",
  "/var/lib/kubelet/device-plugins",
  "/var/lib/kubelet",
];

export interface HostState {
  /** the process that owns the node (its death means the node was abandoned) */
  ownerPid: number;
  /** the node's own directory (containerd root and state, kubelet root, registry storage, logs) */
  dir: string;
  /** the cgroup under which the kubelet puts every pod (`--cgroup-root`), e.g. "/digest-migrations-e2e" */
  cgroupRoot: string;
  bridge: string;
  /** kernel parameters before the kubelet changed them */
  sysctls: Record<string, string>;
  /** for each of HOST_PATHS: the entries that existed before (null: the path did not exist) */
  hostPaths: Record<string, string[] | null>;
}

export function readSysctls(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of KUBELET_SYSCTLS) {
    try {
      out[name] = fs.readFileSync(`/proc/sys/${name}`, "utf8").trim();
    } catch {
      /* not on this kernel */
    }
  }
  return out;
}

export function snapshotHostPaths(): Record<string, string[] | null> {
  const out: Record<string, string[] | null> = {};
  for (const p of HOST_PATHS) {
    try {
      out[p] = fs.readdirSync(p);
    } catch {
      out[p] = null;
    }
  }
  return out;
}

export function writeState(file: string, state: HostState): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(state, null, 2));
  fs.renameSync(`${file}.tmp`, file);
}

export function readState(file: string): HostState | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as HostState;
  } catch {
    return undefined;
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The cgroup v1 hierarchies mounted on this host (/sys/fs/cgroup/<name>). */
function cgroupHierarchies(): string[] {
  const out: string[] = [];
  for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const fields = line.split(" ");
    const sep = fields.indexOf("-");
    if (sep > 0 && fields[sep + 1] === "cgroup" && fields[4]) out.push(fields[4]);
  }
  return out;
}

/** Creates `root` in every hierarchy (the kubelet requires its --cgroup-root to exist). */
export function createCgroupRoot(root: string): void {
  for (const h of cgroupHierarchies()) fs.mkdirSync(path.join(h, root), { recursive: true });
}

/** Kills every process in the cgroup subtree `root` of every hierarchy and removes the subtree. */
function removeCgroups(root: string, problems: string[]): void {
  const hierarchies = cgroupHierarchies();
  const subtrees = hierarchies.map((h) => path.join(h, root)).filter((d) => fs.existsSync(d));
  const dirs: string[] = [];
  const walk = (d: string): void => {
    dirs.push(d);
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  for (const s of subtrees) walk(s);
  // A frozen cgroup (the freezer hierarchy) would keep its processes from dying: thaw first.
  for (const d of dirs) {
    const state = path.join(d, "freezer.state");
    if (fs.existsSync(state)) fs.writeFileSync(state, "THAWED");
  }
  for (let round = 0; round < 50; round++) {
    let left = 0;
    for (const d of dirs) {
      let procs: string[];
      try {
        procs = fs.readFileSync(path.join(d, "cgroup.procs"), "utf8").split("\n").filter(Boolean);
      } catch {
        continue;
      }
      for (const pid of procs) {
        left++;
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          /* gone */
        }
      }
    }
    if (left === 0) break;
    execFileSync("sleep", ["0.1"]); // processes take a moment to leave their cgroup after SIGKILL
  }
  // Deepest first: a cgroup can be removed only once it has no children.
  for (const d of dirs.sort((a, b) => b.length - a.length)) {
    try {
      fs.rmdirSync(d);
    } catch (err) {
      problems.push(`cgroup ${d}: ${(err as Error).message}`);
    }
  }
}

/** Unmounts everything mounted at or under `dir`, deepest first (lazily: a dying process may still hold it). */
function unmountUnder(dir: string, problems: string[]): void {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  for (let round = 0; round < 5; round++) {
    const points = fs
      .readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4])
      .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(prefix)))
      .map((p) => p.replace(/\\040/g, " "));
    if (points.length === 0) return;
    for (const p of points.sort((a, b) => b.length - a.length)) {
      try {
        execFileSync("umount", ["-l", p], { stdio: "pipe" });
      } catch (err) {
        if (round === 4) problems.push(`umount ${p}: ${(err as Error).message.split("\n")[0]}`);
      }
    }
  }
}

/** Kills every process whose command line names `dir`: the node's daemons (their configuration
 *  lives there) and containerd's shims (their socket address does), which outlive containerd. */
function killProcessesOf(dir: string): void {
  for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    let cmdline: string;
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
    } catch {
      continue;
    }
    if (cmdline.includes(dir) && Number(pid) !== process.pid) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        /* gone */
      }
    }
  }
}

/**
 * Removes everything a node described by `state` left behind: its processes and shims, the pods'
 * processes and cgroups, its mounts and network namespaces, the CNI bridge, what it wrote to the
 * host's log and device-plugin directories, its directory; restores the kernel parameters.
 * Returns what could not be removed (empty when the host is clean).
 */
export function cleanHost(state: HostState): string[] {
  const problems: string[] = [];
  killProcessesOf(state.dir);
  removeCgroups(state.cgroupRoot, problems);
  unmountUnder(state.dir, problems);
  try {
    execFileSync("ip", ["link", "del", state.bridge], { stdio: "pipe" });
  } catch (err) {
    if (!/Cannot find device/.test(String((err as { stderr?: Buffer }).stderr ?? ""))) {
      problems.push(`ip link del ${state.bridge}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  for (const [p, before] of Object.entries(state.hostPaths)) {
    if (!fs.existsSync(p)) continue;
    if (before === null) {
      // /var/lib/kubelet itself only if nothing but what the kubelet made is in it.
      fs.rmSync(p, { recursive: true, force: true });
      continue;
    }
    for (const entry of fs.readdirSync(p)) {
      if (!before.includes(entry)) fs.rmSync(path.join(p, entry), { recursive: true, force: true });
    }
  }
  for (const [name, value] of Object.entries(state.sysctls)) {
    try {
      fs.writeFileSync(`/proc/sys/${name}`, value);
    } catch (err) {
      problems.push(`sysctl ${name}=${value}: ${(err as Error).message}`);
    }
  }
  try {
    fs.rmSync(state.dir, { recursive: true, force: true });
  } catch (err) {
    problems.push(`rm -rf ${state.dir}: ${(err as Error).message}`);
  }
  return problems;
}
