/**
 * What is running: the package version (from package.json, found above this
 * file both in src/ under tsx and in dist/src/ in the image), the source
 * revision when the build passes one (SOURCE_REVISION, a build argument in the
 * Dockerfile) and the Node version. Shown by --version and exported as the
 * sessiond_build_info metric.
 */
import { existsSync, readFileSync } from "node:fs";

export interface BuildInfo {
  readonly version: string;
  readonly revision: string;
  readonly nodeVersion: string;
}

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  cached ??= {
    version: packageVersion(),
    revision: process.env["SOURCE_REVISION"]?.slice(0, 64) || "unknown",
    nodeVersion: process.version,
  };
  return cached;
}

function packageVersion(): string {
  for (const up of ["../../package.json", "../../../package.json"]) {
    const url = new URL(up, import.meta.url);
    if (!existsSync(url)) continue;
    const pkg = JSON.parse(readFileSync(url, "utf8")) as { name?: string; version?: string };
    if (pkg.name === "sessiond" && typeof pkg.version === "string") return pkg.version;
  }
  return "unknown";
}
