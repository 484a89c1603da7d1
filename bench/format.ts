/** Number and text formatting for RESULTS.md. */
import type { PhaseResult } from "./phase.js";
import type { Stats } from "./watch-bench.js";

export const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");
export const fmtMs = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : "-");
export const fmtPct = (n: number): string => (Number.isFinite(n) ? `${(n * 100).toFixed(0)} %` : "-");
export const fmtUs = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : "-");
export const fmtB = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : "-");
export const passMiss = (ok: boolean): string => (ok ? "pass" : "MISS");
export const flagsLabel = (flags: readonly string[]): string => (flags.length === 0 ? "no flags" : flags.join(" "));

export const fmtStats = (s: Stats): string => `${fmtInt(s.p50)} / ${fmtInt(s.p99)} / ${fmtInt(s.max)}`;

/** Fits a message into one Markdown table cell. */
export function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").replace(/\|/g, "/").trim();
  return flat.length > 160 ? `${flat.slice(0, 157)}...` : flat;
}

export function errorNote(r: PhaseResult): string {
  return r.errors === 0 ? "" : ` (${fmtInt(r.errors)} errors: ${oneLine(r.firstError ?? "?")})`;
}

