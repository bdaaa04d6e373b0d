// The three pattern languages argocd-cmp-server and the repo-server use, as their Go implementations
// behave (read in Argo CD v2.6.15 … v3.5.1):
//   - Go's path/filepath.Match: the repo-server's tar exclusions (util/io/files/tar.go tgzFile matches
//     each --plugin-tar-exclude glob against the path relative to the repository root);
//   - Go's path/filepath.Glob: `discover.fileName` (cmpserver/plugin/plugin.go matchRepository globs
//     filepath.Join(appPath, fileName));
//   - github.com/mattn/go-zglob v0.0.4/v0.0.6 Glob: `discover.find.glob` (matchRepository, for `**`).
import { lstatSync, readdirSync, statSync } from "node:fs";
import path from "node:path";

/** filepath.ErrBadPattern. */
export class BadPatternError extends Error {
  override name = "BadPatternError";
  constructor() {
    super("syntax error in pattern");
  }
}

/**
 * Go's filepath.Match on Linux: `*` any run of non-`/` characters, `?` one non-`/` character, `[…]` a class
 * (ranges, `^` negation), `\` escapes the next character. The whole name must match.
 */
export function goMatch(pattern: string, name: string): boolean {
  const m = matchFrom(pattern, 0, name, 0);
  // Go reports a malformed pattern even when an earlier part already failed to match.
  checkPattern(pattern);
  return m;
}

function matchFrom(p: string, pi: number, s: string, si: number): boolean {
  while (pi < p.length) {
    const c = p[pi]!;
    if (c === "*") {
      // Collapse runs of stars; a star never crosses a separator.
      while (p[pi] === "*") pi++;
      if (pi === p.length) return !s.slice(si).includes("/");
      for (let k = si; k <= s.length; k++) {
        if (matchFrom(p, pi, s, k)) return true;
        if (s[k] === "/") break;
      }
      return false;
    }
    if (si >= s.length) return false;
    if (c === "?") {
      if (s[si] === "/") return false;
      pi++;
      si++;
      continue;
    }
    if (c === "[") {
      const cls = parseClass(p, pi);
      const ch = s[si]!;
      if (ch === "/" || cls.matches(ch) === cls.negated) return false;
      pi = cls.end;
      si++;
      continue;
    }
    let literal = c;
    if (c === "\\") {
      pi++;
      if (pi >= p.length) throw new BadPatternError();
      literal = p[pi]!;
    }
    if (s[si] !== literal) return false;
    pi++;
    si++;
  }
  return si === s.length;
}

interface CharClass {
  negated: boolean;
  end: number;
  matches: (ch: string) => boolean;
}

function parseClass(p: string, start: number): CharClass {
  let i = start + 1;
  let negated = false;
  if (p[i] === "^") {
    negated = true;
    i++;
  }
  const ranges: Array<[string, string]> = [];
  let first = true;
  for (;;) {
    if (i >= p.length) throw new BadPatternError();
    if (p[i] === "]" && !first) {
      i++;
      break;
    }
    first = false;
    const lo = classChar(p, i);
    i = lo.next;
    let hi = lo.ch;
    if (p[i] === "-" && p[i + 1] !== "]") {
      const h = classChar(p, i + 1);
      hi = h.ch;
      i = h.next;
    }
    ranges.push([lo.ch, hi]);
  }
  return { negated, end: i, matches: (ch) => ranges.some(([lo, hi]) => lo <= ch && ch <= hi) };
}

function classChar(p: string, i: number): { ch: string; next: number } {
  const c = p[i];
  if (c === undefined || c === "-" || c === "]") throw new BadPatternError();
  if (c === "\\") {
    const e = p[i + 1];
    if (e === undefined) throw new BadPatternError();
    return { ch: e, next: i + 2 };
  }
  return { ch: c, next: i + 1 };
}

function checkPattern(p: string): void {
  for (let i = 0; i < p.length; i++) {
    if (p[i] === "\\") {
      if (i + 1 >= p.length) throw new BadPatternError();
      i++;
    } else if (p[i] === "[") {
      i = parseClass(p, i).end - 1;
    }
  }
}

const META = /[*?[\\]/;

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Go's filepath.Glob: every path matching `pattern` (a cleaned path whose segments may hold Match
 * patterns), sorted per directory. A pattern without meta characters matches when it exists (Lstat).
 */
export function goGlob(pattern: string): string[] {
  checkPattern(pattern);
  if (!META.test(pattern)) return exists(pattern) ? [pattern] : [];
  const dir = path.dirname(pattern);
  const file = path.basename(pattern);
  const dirs = META.test(dir) ? goGlob(dir) : [dir];
  const out: string[] = [];
  for (const d of dirs) {
    if (!isDir(d)) continue;
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      continue;
    }
    for (const n of names) if (goMatch(file, n)) out.push(path.join(d, n));
  }
  return out;
}

/**
 * go-zglob's Glob: only `*` (no `/`) and `**` followed by `/` (any number of directories) are special, every other
 * character is literal. The walk starts at the directories before the first segment with a `*`, does not
 * descend into directories the pattern cannot reach, and never reports a symlink. A pattern without `*`
 * matches when the path exists (Stat).
 */
export function zglob(pattern: string): string[] {
  const segments = pattern.split("/");
  const firstWild = segments.findIndex((s) => s.includes("*"));
  if (firstWild < 0) {
    try {
      statSync(pattern);
      return [pattern];
    } catch {
      return [];
    }
  }
  const root = path.normalize(segments.slice(0, firstWild).join("/") || ".");
  const { file, dir } = zglobRegexps(path.normalize(pattern));
  const out: string[] = [];
  const walk = (current: string): void => {
    let names: string[];
    try {
      names = readdirSync(current).sort();
    } catch {
      return;
    }
    for (const n of names) {
      const full = path.join(current, n);
      const st = lstatSync(full);
      if (st.isDirectory()) {
        if (!dir.test(`${full}/`)) continue;
        if (file.test(full)) out.push(full);
        walk(full);
      } else if (!st.isSymbolicLink() && file.test(full)) {
        out.push(full);
      }
    }
  };
  walk(root);
  return out;
}

function zglobRegexps(pattern: string): { file: RegExp; dir: RegExp } {
  let fileMask = "";
  let dirMask = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") {
      if (pattern[i + 1] === "*" && pattern[i + 2] === "/") {
        fileMask += "(.*/)?";
        dirMask = fileMask;
        i += 2;
      } else {
        fileMask += "[^/]*";
      }
      continue;
    }
    fileMask +=
      /[A-Za-z0-9/]/.test(c) || c.charCodeAt(0) > 255 ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
    if (c === "/" && dirMask === "" && fileMask.includes("*")) dirMask = fileMask;
  }
  if (dirMask === "") dirMask = fileMask;
  if (fileMask.endsWith("/")) fileMask += "[^/]*";
  return { file: new RegExp(`^${fileMask}$`, "u"), dir: new RegExp(`^${dirMask}`, "u") };
}
