/**
 * A self-signed server certificate for 127.0.0.1 and localhost, made by
 * openssl for a test (the machine has it; no certificate is committed).
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";

export interface SelfSignedCertificate {
  readonly certFile: string;
  readonly keyFile: string;
}

/** Writes cert.pem and key.pem (EC P-256, valid one day) into dir. */
export function makeSelfSignedCertificate(dir: string): SelfSignedCertificate {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-nodes", "-days", "1",
    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-keyout", keyFile, "-out", certFile,
    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { stdio: "ignore" });
  return { certFile, keyFile };
}
