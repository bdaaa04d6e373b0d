// The repository as the repo-server sends it to a plugin and as argocd-cmp-server unpacks it, after
// Argo CD's util/io/files/tar.go (Tgz / tgzFile, Untgz / untar) and util/cmp/stream.go
// (GetCompressedRepoAndMetadata, receiveFile), read in v2.6.15, v2.14.21 and v3.5.1:
//   - filepath.Walk from the root in lexical order, without following symlinks; each path is matched,
//     relative to the root, against every excluded glob with filepath.Match (a matching directory is
//     skipped whole); only regular files, directories and symlinks are archived; a symlink keeps its
//     target text; the root itself is the entry ".";
//   - gzip, with the sha256 of the compressed bytes as the checksum the receiver verifies;
//   - no regular file at all is an error ("no files to send(<root>)");
//   - unpacking: entries "." and "./" are skipped; every path and every symlink target must stay inside
//     the destination ("illegal filepath in archive" / "illegal filepath in symlink"); symlink targets are
//     rewritten relative; files get mode 0644 and directories 0755 unless the plugin sets
//     preserveFileMode (from v2.9), so an executable bit in git does not survive by default.
import { createHash } from "node:crypto";
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { goMatch } from "./globs.ts";

export interface RepoArchive {
  tgz: Buffer;
  /** Regular files written (Argo CD refuses to send none). */
  filesWritten: number;
  /** Hex sha256 of `tgz`. */
  checksum: string;
  /** Paths archived, relative to the root (directories and symlinks included), for tests. */
  entries: string[];
}

interface Entry {
  name: string;
  type: "file" | "dir" | "symlink";
  mode: number;
  mtime: number;
  data?: Buffer;
  link?: string;
}

/** files.Tgz(root, nil, excluded): the gzipped tar of `root` without the excluded paths. */
export function compressRepository(root: string, excluded: readonly string[] = []): RepoArchive {
  const entries: Entry[] = [];
  let filesWritten = 0;
  const visit = (abs: string): void => {
    const rel = path.relative(root, abs) || ".";
    const st = lstatSync(abs);
    for (const pattern of excluded) {
      if (goMatch(pattern, rel)) return; // a directory: filepath.SkipDir
    }
    const mode = st.mode & 0o7777;
    const mtime = Math.floor(st.mtimeMs / 1000);
    if (st.isSymbolicLink()) {
      entries.push({ name: rel, type: "symlink", mode, mtime, link: readlinkSync(abs) });
    } else if (st.isDirectory()) {
      entries.push({ name: rel, type: "dir", mode, mtime });
      for (const n of readdirSync(abs).sort()) visit(path.join(abs, n));
    } else if (st.isFile()) {
      entries.push({ name: rel, type: "file", mode, mtime, data: readFileSync(abs) });
      filesWritten++;
    }
    // sockets, devices and pipes: not supportedFileMode, skipped
  };
  visit(root);
  if (filesWritten === 0) throw new Error(`no files to send(${root})`);
  const tgz = gzipSync(writeTar(entries));
  return {
    tgz,
    filesWritten,
    checksum: createHash("sha256").update(tgz).digest("hex"),
    entries: entries.map((e) => e.name),
  };
}

/** Inbound: `candidate` is strictly below `base` (files.Inbound). */
export function inbound(candidate: string, base: string): boolean {
  const target = path.isAbsolute(candidate) ? path.normalize(candidate) : path.join(base, candidate);
  return target.startsWith(path.normalize(base) + path.sep);
}

/** receiveFile + files.Untgz: verifies the checksum and unpacks into `dest` (absolute, empty). */
export function extractRepository(dest: string, tgz: Buffer, checksum: string, preserveFileMode = false): void {
  if (createHash("sha256").update(tgz).digest("hex") !== checksum) throw new Error("file checksum validation error");
  if (!path.isAbsolute(dest)) throw new Error(`dstPath points to a relative path: ${dest}`);
  for (const e of readTar(gunzipSync(tgz))) {
    if (e.name === "." || e.name === "./") continue;
    const target = path.join(dest, e.name);
    if (!inbound(target, dest)) throw new Error(`illegal filepath in archive: ${target}`);
    switch (e.type) {
      case "dir":
        mkdirSync(target, { recursive: true, mode: preserveFileMode ? e.mode : 0o755 });
        break;
      case "symlink": {
        const linkTarget = path.join(path.dirname(target), e.link ?? "");
        let real = linkTarget;
        try {
          real = realpathSync(linkTarget);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
            throw new Error(`error checking symlink realpath: ${(error as Error).message}`, { cause: error });
          }
        }
        if (!inbound(real, dest)) throw new Error(`illegal filepath in symlink: ${linkTarget}`);
        symlinkSync(path.relative(path.dirname(target), real), target);
        break;
      }
      case "file":
        mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 });
        writeFileSync(target, e.data ?? Buffer.alloc(0), { mode: preserveFileMode ? e.mode : 0o644 });
        break;
    }
  }
}

// ---- a small tar (ustar, with PAX records for long names, as Go's archive/tar writes them) --------------

const BLOCK = 512;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function header(name: string, e: Entry, typeflag: string, size: number, linkname = ""): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, "utf8");
  h.write(octal(e.mode, 8), 100, "ascii");
  h.write(octal(0, 8), 108, "ascii");
  h.write(octal(0, 8), 116, "ascii");
  h.write(octal(size, 12), 124, "ascii");
  h.write(octal(e.mtime, 12), 136, "ascii");
  h.write("        ", 148, "ascii");
  h.write(typeflag, 156, "ascii");
  h.write(linkname, 157, 100, "utf8");
  h.write("ustar\u000000", 257, "binary");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + " ", 148, "ascii");
  return h;
}

function padded(data: Buffer): Buffer[] {
  const rest = data.length % BLOCK;
  return rest === 0 ? [data] : [data, Buffer.alloc(BLOCK - rest)];
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

function writeTar(entries: readonly Entry[]): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    const link = e.link ?? "";
    if (Buffer.byteLength(e.name) > 100 || Buffer.byteLength(link) > 100) {
      const pax = Buffer.from(paxRecord("path", e.name) + (link === "" ? "" : paxRecord("linkpath", link)));
      out.push(header("PaxHeaders/" + path.basename(e.name).slice(0, 80), e, "x", pax.length), ...padded(pax));
    }
    const name = e.name.slice(0, 100);
    if (e.type === "file") out.push(header(name, e, "0", e.data?.length ?? 0), ...padded(e.data ?? Buffer.alloc(0)));
    else if (e.type === "dir") out.push(header(name, e, "5", 0));
    else out.push(header(name, e, "2", 0, link.slice(0, 100)));
  }
  out.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(out);
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString("utf8");
}

function readTar(tar: Buffer): Entry[] {
  const entries: Entry[] = [];
  let pax: Record<string, string> = {};
  for (let off = 0; off + BLOCK <= tar.length;) {
    const h = tar.subarray(off, off + BLOCK);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(cString(h.subarray(124, 136)).trim() || "0", 8);
    const typeflag = String.fromCharCode(h[156]!);
    const prefix = cString(h.subarray(345, 500));
    const data = tar.subarray(off + BLOCK, off + BLOCK + size);
    off += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === "x") {
      pax = {};
      for (const m of data.toString("utf8").matchAll(/\d+ ([^=]+)=([^\n]*)\n/g)) pax[m[1]!] = m[2]!;
      continue;
    }
    const name =
      pax["path"] ?? (prefix === "" ? cString(h.subarray(0, 100)) : `${prefix}/${cString(h.subarray(0, 100))}`);
    const link = pax["linkpath"] ?? cString(h.subarray(157, 257));
    pax = {};
    const mode = parseInt(cString(h.subarray(100, 108)).trim() || "0", 8);
    const mtime = parseInt(cString(h.subarray(136, 148)).trim() || "0", 8);
    if (typeflag === "0" || typeflag === "\0")
      entries.push({ name, type: "file", mode, mtime, data: Buffer.from(data) });
    else if (typeflag === "5") entries.push({ name, type: "dir", mode, mtime });
    else if (typeflag === "2") entries.push({ name, type: "symlink", mode, mtime, link });
    // other types: untar ignores them
  }
  return entries;
}
