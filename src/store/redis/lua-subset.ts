/**
 * The part of a Lua prelude that one script needs. Every EVALSHA runs its
 * script's whole chunk again, and Lua (5.1) links each closure it makes to the
 * chunk's captured locals by walking the list of open upvalues: the cost per
 * call grows with the number of definitions times the number of captured
 * locals. A script that carries only the definitions it reaches pays for those.
 *
 * The prelude is read as top-level statements: a statement starts at a line
 * in column 0 (comment lines belong to the statement below them; `end`, `}` and
 * indented lines continue one). A definition (`local function f`, `local a, b =`,
 * `local a`) is kept when a kept statement names it; any other statement (`do`,
 * `if`, `for`) is always kept. Names are matched as words anywhere in the code,
 * strings included (only whole comment lines are skipped), so the subset can
 * only be larger than needed.
 */
const STARTS = /^(local |do\b|if |for |while |return\b|--)/;
const DEFINES = /^local\s+(?:function\s+([A-Za-z_]\w*)|([A-Za-z_][\w\s,]*?)\s*(?:=|$))/;
const WORDS = /[A-Za-z_]\w*/g;
const COMMENT_LINES = /^[ \t]*--.*$/gm;

interface Statement {
  readonly text: string;
  /** Names it defines; empty: always kept. */
  readonly names: readonly string[];
}

function statements(prelude: string): Statement[] {
  const out: { lines: string[]; head: string | undefined }[] = [];
  let comments: string[] = [];
  for (const line of prelude.split("\n")) {
    if (line.startsWith("--")) {
      comments.push(line);
    } else if (STARTS.test(line)) {
      out.push({ lines: [...comments, line], head: line });
      comments = [];
    } else if (out.length === 0 || comments.length > 0) {
      // Text before the first statement, or a blank line after comments: a statement of its own.
      out.push({ lines: [...comments, line], head: undefined });
      comments = [];
    } else {
      out[out.length - 1]?.lines.push(line);
    }
  }
  if (comments.length > 0) out.push({ lines: comments, head: undefined });
  return out.map(({ lines, head }) => {
    const m = head === undefined ? null : DEFINES.exec(head);
    const names = m === null ? [] : (m[1] ?? m[2] ?? "").split(",").map((n) => n.trim()).filter((n) => n !== "");
    return { text: lines.join("\n"), names };
  });
}

/** The statements of `prelude` that `body` reaches (transitively), in their order. */
export function preludeFor(prelude: string, body: string): string {
  const all = statements(prelude);
  const definedBy = new Map<string, number>();
  all.forEach((s, i) => {
    for (const name of s.names) definedBy.set(name, i);
  });
  const kept = new Set<number>();
  const pending: string[] = [body];
  all.forEach((s, i) => {
    if (s.names.length === 0) {
      kept.add(i);
      pending.push(s.text);
    }
  });
  for (let text = pending.pop(); text !== undefined; text = pending.pop()) {
    for (const word of text.replace(COMMENT_LINES, "").match(WORDS) ?? []) {
      const i = definedBy.get(word);
      if (i === undefined || kept.has(i)) continue;
      kept.add(i);
      pending.push((all[i] as Statement).text);
    }
  }
  return all.filter((_, i) => kept.has(i)).map((s) => s.text).join("\n");
}
