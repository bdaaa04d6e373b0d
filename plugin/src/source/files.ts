// Walking an application directory the way Argo CD's directory source does (reposerver
// getPotentiallyValidManifests), with the guards a repository from strangers needs:
// - only regular files are read; a symlink is followed only when its target stays inside the boundary
//   (the repository root), otherwise the run fails — the same rule as Argo CD's "illegal filepath in
//   symlink"; a symlink to a directory is not descended into (filepath.Walk does not either); a dangling
//   symlink is skipped;
// - sizes are checked from stat() before a byte is read: one file over maxFileSize, or all files read over
//   maxTotalSize, fails the run.
// Synchronous file system calls: the plugin is a one-shot process with nothing else to do meanwhile, and a
// blocking call per file is markedly faster than a round trip through libuv's thread pool per call.
import { lstatSync as lstat, readdirSync as readdir, realpathSync as realpath, statSync as stat } from "node:fs";
import path from "node:path";
import { PluginError, unresolvable } from "../errors.ts";

export interface FoundFile {
  /** Path relative to the walked directory, with `/` separators. */
  rel: string;
  /** The real path to read (a symlink's target). */
  real: string;
  size: number;
}

export interface WalkOptions {
  boundary: string;
  recurse: boolean;
  /** Decides from the relative path whether a file is a candidate at all (extension, include/exclude). */
  accept: (rel: string) => boolean;
  maxFileSize: number;
  maxTotalSize: number;
}

export interface WalkResult {
  files: FoundFile[];
  /** Files skipped for a reason worth telling a person (dangling symlinks, symlinked directories). */
  skipped: { rel: string; reason: string }[];
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** Lists candidate files under `dir` in a stable (sorted by relative path) order. */
export async function walk(dir: string, options: WalkOptions): Promise<WalkResult> {
  const boundary = realpath(options.boundary);
  const files: FoundFile[] = [];
  const skipped: WalkResult["skipped"] = [];
  let total = 0;

  async function visit(absDir: string, relDir: string): Promise<void> {
    const entries = readdir(absDir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const abs = path.join(absDir, entry.name);
      const rel = relDir === "" ? entry.name : `${relDir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (options.recurse) await visit(abs, rel);
        continue;
      }
      if (!options.accept(rel)) continue;
      let real = abs;
      let info = lstat(abs);
      if (info.isSymbolicLink()) {
        try {
          real = realpath(abs);
        } catch (error) {
          if (unresolvable(error)) {
            skipped.push({ rel, reason: "dangling symlink" });
            continue;
          }
          throw error;
        }
        if (!inside(real, boundary)) {
          throw new PluginError(`${rel}: symlink points outside the repository (${real})`);
        }
        info = stat(real);
      }
      if (!info.isFile()) {
        skipped.push({
          rel,
          reason: info.isDirectory() ? "symlink to a directory (not followed)" : "not a regular file",
        });
        continue;
      }
      if (info.size > options.maxFileSize) {
        throw new PluginError(
          `${rel}: file is ${info.size} bytes, over the limit of ${options.maxFileSize} (max-file-size)`,
        );
      }
      total += info.size;
      if (total > options.maxTotalSize) {
        throw new PluginError(
          `${rel}: manifests total over the limit of ${options.maxTotalSize} bytes (max-total-size)`,
        );
      }
      files.push({ rel, real, size: info.size });
    }
  }

  await visit(dir, "");
  return { files, skipped };
}

/**
 * Fails when any symlink under `dir` resolves outside the boundary. Run before handing a directory to helm
 * or kustomize: helm follows symlinks inside a chart (`.Files.Get` could read the sidecar's files), so the
 * tree must be checked first. Stops descending at maxEntries to bound time on hostile trees.
 */
export function assertNoEscapingSymlinks(dir: string, boundaryDir: string, maxEntries = 100_000): void {
  const boundary = realpath(boundaryDir);
  let seen = 0;
  function visit(absDir: string, relDir: string): void {
    const entries = readdir(absDir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (++seen > maxEntries) throw new PluginError(`${dir}: more than ${maxEntries} files in the source`);
      const abs = path.join(absDir, entry.name);
      const rel = relDir === "" ? entry.name : `${relDir}/${entry.name}`;
      if (entry.isSymbolicLink()) {
        let real: string;
        try {
          real = realpath(abs);
        } catch (error) {
          // Dangling or a loop: neither helm nor kustomize can read through it.
          if (unresolvable(error)) continue;
          throw new PluginError(`${rel}: cannot resolve symlink: ${(error as Error).message}`);
        }
        if (!inside(real, boundary)) throw new PluginError(`${rel}: symlink points outside the repository (${real})`);
        continue;
      }
      if (entry.isDirectory()) visit(abs, rel);
    }
  }
  visit(dir, "");
}
